module "monitoring" {
  source = "../monitoring"

  project_id                = var.project_id
  prefix                    = var.prefix
  jobs_subscription         = module.pubsub.subscription_names["jobs-worker"]
  dead_letter_subscriptions = module.pubsub.dead_letter_subscriptions
  queue_age_slo_seconds     = var.monitoring.queue_age_slo_seconds
  worker_errors_per_minute  = var.monitoring.worker_errors_per_minute
  notification_channels     = var.monitoring.notification_channels
  worker_log_filter = join(" OR ", [
    "(resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${var.prefix}-worker\")",
    "(resource.type=\"k8s_container\" AND resource.labels.namespace_name=\"gpupipe\" AND labels.k8s-pod/app=\"gpupipe-worker\")",
  ])

  depends_on = [google_project_service.this]
}
