resource "google_monitoring_alert_policy" "dead_letters" {
  for_each = var.dead_letter_subscriptions

  project               = var.project_id
  display_name          = "${var.prefix}: messages in ${each.value}"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Subscription `${each.value}` reads a dead-letter topic and is not empty: deliveries failed after every attempt. Inspect with `gcloud pubsub subscriptions pull ${each.value} --limit 10` (without --auto-ack), fix the cause, then replay or acknowledge."
  }

  conditions {
    display_name = "undelivered messages > 0"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${each.value}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "${var.dead_letter_grace_seconds}s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "queue_age" {
  project               = var.project_id
  display_name          = "${var.prefix}: jobs wait longer than ${var.queue_age_slo_seconds}s"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "The oldest unacknowledged message on `${var.jobs_subscription}` is older than the ${var.queue_age_slo_seconds}s SLO: workers are not keeping up or not starting (GPU quota, dispatcher, KEDA)."
  }

  conditions {
    display_name = "oldest unacked message age over SLO"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.jobs_subscription}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.queue_age_slo_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "worker_errors" {
  project               = var.project_id
  display_name          = "${var.prefix}: worker error rate"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "GPU workers log more than ${var.worker_errors_per_minute} errors a minute. Check the worker logs (Logs Explorer: `${var.worker_log_filter}`)."
  }

  conditions {
    display_name = "worker errors per minute"
    condition_threshold {
      filter          = "resource.type = one_of(\"cloud_run_job\", \"k8s_container\") AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.worker_errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.worker_errors_per_minute / 60
      duration        = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}
