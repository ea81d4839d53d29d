# Production: GKE workers on an autoscaling L4 pool (KEDA), a warm API instance.
# Used as terraform plan/apply -var-file=environments/prod.tfvars (docs/deploy.md, "First apply").
environment         = "prod"
prefix              = "gpupipe-prod"
region              = "us-central1"
firestore_location  = "nam5"
artifact_repository = "gpupipe"
worker_platform     = "gke"
deletion_protection = true

dispatch = {
  jobs_per_worker = 8
  max_workers     = 8
}

api = {
  min_instances = 1
  max_instances = 50
  concurrency   = 40
}

gke = {
  node_locations  = ["us-central1-a", "us-central1-b", "us-central1-c"]
  release_channel = "REGULAR"
  gpu_max_nodes   = 8
  gpu_spot        = false
}

monitoring = {
  queue_age_slo_seconds = 600
}
