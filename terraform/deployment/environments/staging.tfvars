# Staging: Cloud Run workers, small caps, everything deletable.
# Used as terraform plan/apply -var-file=environments/staging.tfvars (docs/deploy.md, "First apply").
environment         = "staging"
prefix              = "gpupipe-stg"
region              = "us-central1"
firestore_location  = "us-central1"
artifact_repository = "gpupipe"
worker_platform     = "cloudrun"
deletion_protection = false

dispatch = {
  jobs_per_worker = 8
  max_workers     = 2
}

api = {
  min_instances = 0
  max_instances = 5
}

monitoring = {
  queue_age_slo_seconds = 900
}
