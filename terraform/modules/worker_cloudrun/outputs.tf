output "job_name" {
  description = "Short name of the worker job."
  value       = google_cloud_run_v2_job.worker.name
}

output "job_id" {
  description = "Full resource name of the worker job (projects/P/locations/R/jobs/J), as dispatch addresses it."
  value       = google_cloud_run_v2_job.worker.id
}
