output "api_url" {
  description = "The public HTTPS endpoint."
  value       = module.gpupipe.api_url
}

output "settings_env" {
  description = "Environment of the deployables (no secrets), for `gpupipe admin` and the smoke test."
  value       = module.gpupipe.settings_env
}

output "pepper_secret_id" {
  description = "Secret Manager secret of the API key pepper."
  value       = module.gpupipe.pepper_secret_id
}

output "worker_job" {
  description = "Cloud Run worker job (null on GKE)."
  value       = module.gpupipe.worker_job
}

output "gke_cluster" {
  description = "GKE cluster name and location (null on Cloud Run)."
  value       = module.gpupipe.gke_cluster
}

output "k8s_values" {
  description = "Values for ops/render_k8s.py (GKE only)."
  value       = module.gpupipe.k8s_values
}
