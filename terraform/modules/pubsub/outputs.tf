output "topic_ids" {
  description = "Topic ids (projects/P/topics/T) by logical name."
  value       = { for name, topic in google_pubsub_topic.this : name => topic.id }
}

output "topic_names" {
  description = "Concrete topic names by logical name."
  value       = { for name, topic in google_pubsub_topic.this : name => topic.name }
}

output "subscription_names" {
  description = "Concrete subscription names by logical name."
  value       = { for name, sub in google_pubsub_subscription.this : name => sub.name }
}

output "dead_letter_subscriptions" {
  description = "Concrete names of the subscriptions that read a dead-letter topic, by logical name."
  value       = { for name, sub in module.topology.dead_letter_subscriptions : name => google_pubsub_subscription.this[name].name }
}
