output "database_name" {
  description = "The Firestore database id."
  value       = google_firestore_database.this.name
}

output "index_ids" {
  description = "Composite index ids by name."
  value       = { for name, index in google_firestore_index.this : name => index.id }
}
