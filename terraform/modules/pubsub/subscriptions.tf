# Every field below comes from topology.yaml, as it does for the emulator bootstrap.
resource "google_pubsub_subscription" "this" {
  for_each = module.topology.subscriptions

  project                    = var.project_id
  name                       = each.value.name
  topic                      = google_pubsub_topic.this[each.value.topic_key].id
  labels                     = var.labels
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "${each.value.message_retention_seconds}s"
  retain_acked_messages      = false

  # Never expire for inactivity: an idle week must not delete the work queue.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "${each.value.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${each.value.retry_maximum_backoff_seconds}s"
  }

  # Absent only on the terminal parking subscription (topology.yaml says why).
  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter_topic_key == null ? [] : [each.value]
    content {
      dead_letter_topic     = google_pubsub_topic.this[dead_letter_policy.value.dead_letter_topic_key].id
      max_delivery_attempts = dead_letter_policy.value.max_delivery_attempts
    }
  }

  dynamic "push_config" {
    for_each = contains(keys(var.push_endpoints), each.key) ? [var.push_endpoints[each.key]] : []
    content {
      push_endpoint = push_config.value.url
      oidc_token {
        service_account_email = push_config.value.service_account_email
        audience              = push_config.value.url
      }
    }
  }
}
