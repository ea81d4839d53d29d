output "topics" {
  description = "Topics by logical name: {name, purpose}."
  value       = local.topics
}

output "subscriptions" {
  description = "Subscriptions by logical name, with concrete topic and dead-letter topic names and their logical keys."
  value       = local.subscriptions

  precondition {
    condition     = alltrue([for sub in local.subscriptions : contains(keys(local.topics), sub.topic_key)])
    error_message = "Every subscription in topology.yaml must name a topic the file declares."
  }
  precondition {
    condition = alltrue([
      for sub in local.subscriptions : sub.dead_letter_topic_key == null || (
        contains(keys(local.topics), coalesce(sub.dead_letter_topic_key, "-")) && sub.dead_letter_topic_key != sub.topic_key
      )
    ])
    error_message = "A dead_letter_topic must be a declared topic other than the subscription's own topic."
  }
  precondition {
    condition = alltrue([
      for sub in local.subscriptions : sub.dead_letter_topic_key == null || (
        try(sub.max_delivery_attempts >= 5 && sub.max_delivery_attempts <= 100, false)
      )
    ])
    error_message = "max_delivery_attempts must be between 5 and 100 (the Pub/Sub limits) wherever a dead_letter_topic is set."
  }
  precondition {
    # Only the end of a dead-letter chain may go without a dead-letter policy.
    condition     = alltrue([for sub in values(local.parking_subscriptions) : contains(local.dead_letter_topic_keys, sub.topic_key)])
    error_message = "A subscription without dead_letter_topic is allowed only on a topic that is itself a dead-letter topic (the terminal parking subscription)."
  }
}

output "dead_letter_subscriptions" {
  description = "Subscriptions that read a dead-letter topic, by logical name (each gets a non-empty alert)."
  value       = local.dead_letter_subscriptions
}

output "parking_subscriptions" {
  description = "Terminal subscriptions with no dead-letter policy of their own, by logical name."
  value       = local.parking_subscriptions
}

output "buckets" {
  description = "Buckets by logical name: {name, purpose, versioning, delete_after_days}."
  value       = local.buckets
}

output "notifications" {
  description = "Cloud Storage Pub/Sub notifications by logical name."
  value       = local.notifications

  precondition {
    condition = alltrue([
      for n in local.notifications : contains(keys(local.buckets), n.bucket_key) && contains(keys(local.topics), n.topic_key)
    ])
    error_message = "Every notification must name a declared bucket and topic."
  }
}

output "settings_env" {
  description = "Environment variables (core.settings.ENV_VARS names) holding the concrete resource names."
  value       = local.settings_env
}
