resource "google_logging_metric" "worker_errors" {
  project     = var.project_id
  name        = "${var.prefix}-worker-errors"
  description = "Worker log entries at severity ERROR or above."
  filter      = "(${var.worker_log_filter}) AND severity>=ERROR"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}
