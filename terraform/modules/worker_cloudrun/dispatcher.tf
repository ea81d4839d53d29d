# The dispatch function reads this job's executions and runs new ones with a task count.
resource "google_cloud_run_v2_job_iam_member" "dispatcher_runs" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.worker.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${var.dispatcher.service_account_email}"
}

resource "google_cloud_run_v2_job_iam_member" "dispatcher_reads" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.worker.name
  role     = "roles/run.viewer"
  member   = "serviceAccount:${var.dispatcher.service_account_email}"
}

# The periodic tick; the API also nudges dispatch after each submit (GPUPIPE_DISPATCH_URL).
resource "google_cloud_scheduler_job" "dispatch" {
  project          = var.project_id
  region           = var.region
  name             = "${var.prefix}-dispatch"
  description      = "Start GPU worker executions when the jobs subscription has backlog."
  schedule         = var.dispatcher.schedule
  time_zone        = var.dispatcher.time_zone
  attempt_deadline = "30s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = var.dispatcher.url
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ reason = "schedule" }))

    oidc_token {
      service_account_email = var.dispatcher.scheduler_service_account_email
      audience              = var.dispatcher.url
    }
  }
}
