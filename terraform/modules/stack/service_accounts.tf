locals {
  gke = var.worker_platform == "gke"

  # One account per component. Project-level roles only where GCP has no finer resource:
  # Firestore data access (roles/datastore.user) and reading Cloud Monitoring.
  service_accounts = merge(
    {
      api            = { description = "The public HTTP API function.", project_roles = ["roles/datastore.user"] }
      on-upload      = { description = "Turns inbox uploads into batches of jobs.", project_roles = ["roles/datastore.user"] }
      on-dead-letter = { description = "Fails dead-lettered jobs and releases their quota.", project_roles = ["roles/datastore.user"] }
      dispatch       = { description = "Starts Cloud Run worker executions sized to the backlog.", project_roles = ["roles/monitoring.viewer"] }
      worker         = { description = "The GPU worker.", project_roles = ["roles/datastore.user"] }
      reconcile      = { description = "Redelivers jobs whose delivery was lost (core/reconciler.py).", project_roles = ["roles/datastore.user"] }
      scheduler      = { description = "Cloud Scheduler's identity when it calls dispatch and reconcile." }
      pubsub-push    = { description = "Pub/Sub push subscriptions' identity when they call the event functions." }
      fn-build       = { description = "Builds the functions from source.", project_roles = ["roles/logging.logWriter"] }
    },
    local.gke ? {
      keda      = { description = "KEDA operator: reads the subscription backlog from Cloud Monitoring.", project_roles = ["roles/monitoring.viewer"] }
      gke-nodes = { description = "GKE nodes: logs, metrics, image pulls.", project_roles = ["roles/container.defaultNodeServiceAccount"] }
    } : {},
  )
}

module "iam" {
  source = "../iam"

  project_id       = var.project_id
  prefix           = var.prefix
  service_accounts = local.service_accounts

  depends_on = [google_project_service.this]
}

# The API signs output URLs with its own account's key (iam.serviceAccounts.signBlob on itself only).
resource "google_service_account_iam_member" "api_signs_urls" {
  service_account_id = module.iam.ids["api"]
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = module.iam.members["api"]
}

data "google_project" "this" {
  project_id = var.project_id
}

# Pub/Sub mints the OIDC tokens of push deliveries as the pubsub-push account.
resource "google_service_account_iam_member" "pubsub_push_tokens" {
  service_account_id = module.iam.ids["pubsub-push"]
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
