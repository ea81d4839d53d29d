output "bucket_names" {
  description = "Concrete bucket names by logical name."
  value       = { for name, bucket in google_storage_bucket.this : name => bucket.name }
}

output "bucket_urls" {
  description = "gs:// URLs by logical name."
  value       = { for name, bucket in google_storage_bucket.this : name => bucket.url }
}
