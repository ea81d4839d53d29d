# The emulator does not enforce composite indexes, so the queries' needs are declared here.
resource "google_firestore_index" "this" {
  for_each = var.composite_indexes

  project     = var.project_id
  database    = google_firestore_database.this.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field
      order      = fields.value.order
    }
  }
}
