output "alert_policy_ids" {
  description = "Alert policy ids by purpose."
  value = merge(
    { for name, policy in google_monitoring_alert_policy.dead_letters : "dead-letters/${name}" => policy.id },
    { "queue-age" = google_monitoring_alert_policy.queue_age.id, "worker-errors" = google_monitoring_alert_policy.worker_errors.id },
  )
}

output "dashboard_id" {
  description = "The dashboard's id."
  value       = google_monitoring_dashboard.this.id
}
