locals {
  worker_env = merge(local.settings_env, {
    GPUPIPE_WORKER_DEVICE = "cuda"
    GPUPIPE_WORKER_DTYPE  = "float16"
  })
  worker_platforms = { for platform in [var.worker_platform] : platform => platform }
}

module "worker_cloudrun" {
  source   = "../worker_cloudrun"
  for_each = { for k, v in local.worker_platforms : k => v if k == "cloudrun" }

  project_id             = var.project_id
  region                 = var.region
  prefix                 = var.prefix
  labels                 = var.labels
  image                  = var.worker_image
  service_account_email  = module.iam.emails["worker"]
  env                    = local.worker_env
  pepper_secret_id       = module.functions.pepper_secret_id
  exit_when_idle_seconds = var.worker.exit_when_idle_seconds
  deletion_protection    = var.deletion_protection

  dispatcher = {
    url                             = module.functions.urls["dispatch"]
    service_account_email           = module.iam.emails["dispatch"]
    scheduler_service_account_email = module.iam.emails["scheduler"]
    schedule                        = var.dispatch.schedule
  }
}

module "worker_gke" {
  source   = "../worker_gke"
  for_each = { for k, v in local.worker_platforms : k => v if k == "gke" }

  project_id                 = var.project_id
  region                     = var.region
  node_locations             = var.gke.node_locations
  prefix                     = var.prefix
  labels                     = var.labels
  release_channel            = var.gke.release_channel
  master_authorized_networks = var.gke.master_authorized_networks
  node_service_account_email = module.iam.emails["gke-nodes"]
  deletion_protection        = var.deletion_protection

  gpu_pool = {
    max_nodes = var.gke.gpu_max_nodes
    spot      = var.gke.gpu_spot
  }

  # Must match k8s/: the worker's and KEDA's Kubernetes service accounts.
  workload_identities = {
    worker = { kubernetes_service_account = "gpupipe/gpupipe-worker", service_account_id = module.iam.ids["worker"] }
    keda   = { kubernetes_service_account = "keda/keda-operator", service_account_id = module.iam.ids["keda"] }
  }
}
