locals {
  topology = yamldecode(file(var.topology_file))

  topics = {
    for name, topic in local.topology.topics : name => {
      name    = "${var.prefix}-${name}"
      purpose = topic.purpose
    }
  }

  subscriptions = {
    for name, sub in local.topology.subscriptions : name => {
      name                          = "${var.prefix}-${name}"
      topic_key                     = sub.topic
      topic                         = "${var.prefix}-${sub.topic}"
      ack_deadline_seconds          = sub.ack_deadline_seconds
      message_retention_seconds     = sub.message_retention_seconds
      retry_minimum_backoff_seconds = sub.retry_minimum_backoff_seconds
      retry_maximum_backoff_seconds = sub.retry_maximum_backoff_seconds
      dead_letter_topic_key         = try(sub.dead_letter_topic, null)
      dead_letter_topic             = try(sub.dead_letter_topic, null) == null ? null : "${var.prefix}-${sub.dead_letter_topic}"
      max_delivery_attempts         = try(sub.dead_letter_topic, null) == null ? null : sub.max_delivery_attempts
      delivered_to                  = sub.delivered_to
    }
  }

  # Topics some subscription dead-letters into, and the subscriptions that read them: a message
  # there is a failure someone must look at, so monitoring alerts on each of them.
  dead_letter_topic_keys = toset(compact([for sub in local.subscriptions : sub.dead_letter_topic_key]))
  dead_letter_subscriptions = {
    for name, sub in local.subscriptions : name => sub if contains(local.dead_letter_topic_keys, sub.topic_key)
  }

  # The end of the dead-letter chain: no dead-letter policy of its own (see topology.yaml).
  parking_subscriptions = {
    for name, sub in local.subscriptions : name => sub if sub.dead_letter_topic_key == null
  }

  buckets = {
    for name, bucket in local.topology.buckets : name => {
      name              = "${var.prefix}-${name}"
      purpose           = bucket.purpose
      versioning        = bucket.versioning
      delete_after_days = try(bucket.delete_after_days, null)
    }
  }

  notifications = {
    for name, n in local.topology.notifications : name => {
      bucket_key  = n.bucket
      bucket      = "${var.prefix}-${n.bucket}"
      topic_key   = n.topic
      topic       = "${var.prefix}-${n.topic}"
      event_types = n.event_types
    }
  }

  # The environment variables core.settings reads for resource names (ENV_VARS), with the
  # topology's names; tests compare this map with core.settings.resource_names(prefix).
  settings_env = {
    GPUPIPE_INBOX_BUCKET               = local.buckets["inbox"].name
    GPUPIPE_OUTPUTS_BUCKET             = local.buckets["outputs"].name
    GPUPIPE_MODELS_BUCKET              = local.buckets["models"].name
    GPUPIPE_JOBS_TOPIC                 = local.topics["jobs"].name
    GPUPIPE_JOBS_SUBSCRIPTION          = local.subscriptions["jobs-worker"].name
    GPUPIPE_JOBS_DEAD_TOPIC            = local.topics["jobs-dead"].name
    GPUPIPE_JOBS_DEAD_SUBSCRIPTION     = local.subscriptions["jobs-dead-handler"].name
    GPUPIPE_UPLOADS_TOPIC              = local.topics["uploads"].name
    GPUPIPE_UPLOADS_SUBSCRIPTION       = local.subscriptions["uploads-handler"].name
    GPUPIPE_UNDELIVERABLE_TOPIC        = local.topics["undeliverable"].name
    GPUPIPE_UNDELIVERABLE_SUBSCRIPTION = local.subscriptions["undeliverable-hold"].name
  }
}
