data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  dead_lettering_subscriptions = {
    for name, sub in module.topology.subscriptions : name => sub if sub.dead_letter_topic_key != null
  }
}

# Dead-lettering: the Pub/Sub service agent forwards undeliverable messages (publisher on the
# dead-letter topic) and acknowledges them on the source subscription (subscriber there).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset([for sub in local.dead_lettering_subscriptions : sub.dead_letter_topic_key])

  project = var.project_id
  topic   = google_pubsub_topic.this[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source_subscriber" {
  for_each = local.dead_lettering_subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.topic_publishers

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

resource "google_pubsub_subscription_iam_member" "subscriber" {
  for_each = var.subscription_subscribers

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.value.subscription].name
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}
