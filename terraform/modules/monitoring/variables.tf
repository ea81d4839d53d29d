variable "project_id" {
  description = "Project whose metrics are watched."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix for alert, metric and dashboard names."
  type        = string
  nullable    = false
}

variable "jobs_subscription" {
  description = "Concrete name of the GPU workers' subscription (queue age SLO)."
  type        = string
  nullable    = false
}

variable "dead_letter_subscriptions" {
  description = "Concrete names of the subscriptions that read dead-letter topics, by logical name; any message there is a failure to look at."
  type        = map(string)
  nullable    = false
}

variable "worker_log_filter" {
  description = "Cloud Logging filter that selects the workers' log entries (the Cloud Run job's, the GKE Deployment's, or both)."
  type        = string
  nullable    = false
}

variable "queue_age_slo_seconds" {
  description = "Alert when the oldest unacknowledged job message is older than this."
  type        = number
  nullable    = false
  default     = 600
}

variable "dead_letter_grace_seconds" {
  description = "How long a dead-letter subscription may hold messages before the alert fires (0: at once)."
  type        = number
  nullable    = false
  default     = 0
}

variable "worker_errors_per_minute" {
  description = "Alert when worker error log entries exceed this rate, averaged over five minutes."
  type        = number
  nullable    = false
  default     = 1
}

variable "notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) every alert notifies."
  type        = list(string)
  nullable    = false
  default     = []
}
