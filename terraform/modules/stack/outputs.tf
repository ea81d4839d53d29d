output "api_url" {
  description = "The public HTTPS endpoint (GPUPIPE_API_URL for clients)."
  value       = module.functions.urls["api"]
}

output "settings_env" {
  description = "The environment the deployables run with (without the pepper), for the admin CLI and the smoke test."
  value       = local.settings_env
}

output "pepper_secret_id" {
  description = "Secret holding the API key pepper."
  value       = module.functions.pepper_secret_id
}

output "service_accounts" {
  description = "Service account emails by component."
  value       = module.iam.emails
}

output "worker_job" {
  description = "Full name of the Cloud Run worker job (null on GKE)."
  value       = try(module.worker_cloudrun["cloudrun"].job_id, null)
}

output "gke_cluster" {
  description = "Name and location of the GKE cluster (null on Cloud Run)."
  value       = try({ name = module.worker_gke["gke"].cluster_name, location = module.worker_gke["gke"].cluster_location }, null)
}

output "k8s_values" {
  description = "Values ops/render_k8s.py substitutes into k8s/ (GKE only)."
  value = local.gke ? {
    WORKER_IMAGE       = var.worker_image
    WORKER_GSA         = module.iam.emails["worker"]
    JOBS_SUBSCRIPTION  = module.pubsub.subscription_names["jobs-worker"]
    JOBS_PER_WORKER    = tostring(var.dispatch.jobs_per_worker)
    MAX_WORKERS        = tostring(var.gke.gpu_max_nodes)
    PEPPER_SECRET      = module.functions.pepper_secret_id
    SETTINGS_CONFIGMAP = jsonencode(local.worker_env)
  } : null
}
