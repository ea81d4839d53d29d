resource "google_storage_bucket_iam_member" "this" {
  for_each = var.bucket_access

  bucket = google_storage_bucket.this[each.value.bucket].name
  role   = each.value.role
  member = each.value.member
}
