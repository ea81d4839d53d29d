module "pubsub" {
  source = "../pubsub"

  project_id    = var.project_id
  prefix        = var.prefix
  topology_file = var.topology_file
  labels        = var.labels

  push_endpoints = {
    "uploads-handler"   = { url = module.functions.urls["on_upload"], service_account_email = module.iam.emails["pubsub-push"] }
    "jobs-dead-handler" = { url = module.functions.urls["on_dead_letter"], service_account_email = module.iam.emails["pubsub-push"] }
  }

  topic_publishers = {
    "jobs/api"       = { topic = "jobs", member = module.iam.members["api"] }
    "jobs/on-upload" = { topic = "jobs", member = module.iam.members["on-upload"] }
    # Recovery republishes jobs whose delivery was lost (core/reconciler.py): the reconcile
    # function, every worker's sweep, and the dead-letter handler for jobs no worker claimed.
    "jobs/reconcile"      = { topic = "jobs", member = module.iam.members["reconcile"] }
    "jobs/worker"         = { topic = "jobs", member = module.iam.members["worker"] }
    "jobs/on-dead-letter" = { topic = "jobs", member = module.iam.members["on-dead-letter"] }
  }

  subscription_subscribers = {
    "jobs-worker/worker" = { subscription = "jobs-worker", member = module.iam.members["worker"] }
  }

  depends_on = [google_project_service.this]
}

module "storage" {
  source = "../storage"

  project_id             = var.project_id
  prefix                 = var.prefix
  location               = var.region
  topology_file          = var.topology_file
  labels                 = var.labels
  force_destroy          = !var.deletion_protection
  notification_topic_ids = module.pubsub.topic_ids

  bucket_access = {
    "inbox/on-upload"        = { bucket = "inbox", role = "roles/storage.objectViewer", member = module.iam.members["on-upload"] }
    "outputs/api"            = { bucket = "outputs", role = "roles/storage.objectUser", member = module.iam.members["api"] }
    "outputs/on-upload"      = { bucket = "outputs", role = "roles/storage.objectUser", member = module.iam.members["on-upload"] }
    "outputs/on-dead-letter" = { bucket = "outputs", role = "roles/storage.objectUser", member = module.iam.members["on-dead-letter"] }
    "outputs/worker"         = { bucket = "outputs", role = "roles/storage.objectUser", member = module.iam.members["worker"] }
    "outputs/reconcile"      = { bucket = "outputs", role = "roles/storage.objectUser", member = module.iam.members["reconcile"] }
    "models/worker"          = { bucket = "models", role = "roles/storage.objectViewer", member = module.iam.members["worker"] }
  }

  depends_on = [google_project_service.this]
}

module "firestore" {
  source = "../firestore"

  project_id        = var.project_id
  location          = var.firestore_location
  delete_protection = var.deletion_protection

  # Field names are those core/ and the API write (core/jobs.py, core/ledger.py, core/batches.py).
  composite_indexes = {
    jobs-by-user = {
      collection = "jobs"
      fields     = [{ field = "user_id" }, { field = "created_at", order = "DESCENDING" }]
    }
    jobs-by-user-status = {
      collection = "jobs"
      fields     = [{ field = "user_id" }, { field = "status" }, { field = "created_at", order = "DESCENDING" }]
    }
    jobs-by-status-updated = {
      collection = "jobs"
      fields     = [{ field = "status" }, { field = "updated_at" }]
    }
    batches-by-user = {
      collection = "batches"
      fields     = [{ field = "user_id" }, { field = "created_at", order = "DESCENDING" }]
    }
    usage-by-user-day = {
      collection = "usage"
      fields     = [{ field = "user_id" }, { field = "day" }]
    }
    usage-by-user-recorded = {
      collection = "usage"
      fields     = [{ field = "user_id" }, { field = "recorded_at", order = "DESCENDING" }]
    }
    models-by-name-registered = {
      collection = "models"
      fields     = [{ field = "name" }, { field = "registered_at", order = "DESCENDING" }]
    }
  }

  ttl_fields = {
    idempotency  = "expires_at"
    rate_windows = "expires_at"
  }

  depends_on = [google_project_service.this]
}
