# "Every accepted job ends": Cloud Scheduler runs one recovery sweep a minute (the reconcile
# function). A sweep republishes jobs queued too long and running jobs whose worker stopped
# heartbeating, and fails jobs that used up their attempts (core/reconciler.py).
resource "google_cloud_scheduler_job" "reconcile" {
  project          = var.project_id
  region           = var.region
  name             = "${var.prefix}-reconcile"
  description      = "Redeliver jobs whose delivery was lost (a crashed process, a stuck pull)."
  schedule         = var.recovery.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "120s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.function_url["reconcile"]
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ reason = "schedule" }))

    oidc_token {
      service_account_email = module.iam.emails["scheduler"]
      audience              = local.function_url["reconcile"]
    }
  }

  depends_on = [module.functions]
}
