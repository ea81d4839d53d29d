data "google_storage_project_service_account" "this" {
  project = var.project_id
}

# The Cloud Storage service agent publishes the notifications, on that topic only.
resource "google_pubsub_topic_iam_member" "notification_publisher" {
  for_each = toset([for n in module.topology.notifications : n.topic_key])

  project = var.project_id
  topic   = var.notification_topic_ids[each.key]
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"
}

resource "google_storage_notification" "this" {
  for_each = module.topology.notifications

  bucket         = google_storage_bucket.this[each.value.bucket_key].name
  topic          = var.notification_topic_ids[each.value.topic_key]
  payload_format = "JSON_API_V1"
  event_types    = each.value.event_types

  depends_on = [google_pubsub_topic_iam_member.notification_publisher]
}
