# Short-lived documents (idempotency records, rate-limit windows) expire on their own.
resource "google_firestore_field" "ttl" {
  for_each = var.ttl_fields

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.key
  field      = each.value

  ttl_config {}

  # A TTL field is only compared with the clock, never queried: skip its single-field indexes.
  index_config {}
}
