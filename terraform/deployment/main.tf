# The one root module of every environment. What differs between staging and prod lives in
# environments/: <env>.tfvars (passed with -var-file) and <env>.gcs.tfbackend (passed at init
# with -backend-config). docs/deploy.md, "First apply", has the commands.
module "gpupipe" {
  source = "../modules/stack"

  project_id          = var.project_id
  environment         = var.environment
  prefix              = var.prefix
  region              = var.region
  firestore_location  = var.firestore_location
  topology_file       = "${path.root}/../../topology.yaml"
  artifact_repository = var.artifact_repository
  worker_image        = var.worker_image
  functions_source    = var.functions_source
  worker_platform     = var.worker_platform
  dispatch            = var.dispatch
  recovery            = var.recovery
  api                 = var.api
  gke                 = var.gke
  monitoring          = var.monitoring
  deletion_protection = var.deletion_protection
  labels              = { app = "gpupipe", environment = var.environment }
}
