module "functions" {
  source = "../functions"

  project_id               = var.project_id
  region                   = var.region
  prefix                   = var.prefix
  labels                   = var.labels
  source_archive           = var.functions_source
  docker_repository        = data.google_artifact_registry_repository.images.id
  build_service_account_id = module.iam.ids["fn-build"]
  common_env               = local.settings_env
  pepper_secret_id         = "${var.prefix}-api-key-pepper"
  pepper_accessors         = { worker = module.iam.members["worker"] }

  functions = merge({
    api = {
      service_account_email = module.iam.emails["api"]
      public                = true
      ingress               = "ALLOW_ALL"
      min_instances         = var.api.min_instances
      max_instances         = var.api.max_instances
      concurrency           = var.api.concurrency
      cpu                   = var.api.cpu
      memory                = var.api.memory
      env                   = local.gke ? {} : { GPUPIPE_DISPATCH_URL = local.function_url["dispatch"] }
    }
    on_upload = {
      service_account_email = module.iam.emails["on-upload"]
      invokers              = { pubsub-push = module.iam.members["pubsub-push"] }
      min_instances         = var.event_functions.min_instances
      max_instances         = var.event_functions.max_instances
      concurrency           = var.event_functions.concurrency
      cpu                   = var.event_functions.cpu
      memory                = var.event_functions.memory
      timeout_seconds       = 300
    }
    # One recovery sweep a minute from Cloud Scheduler (recovery.tf). Workers sweep too, but Cloud
    # Run workers scale to zero, and then only this one finds jobs whose messages were lost.
    reconcile = {
      service_account_email = module.iam.emails["reconcile"]
      # Cloud Scheduler calls from outside any VPC; IAM admits only its account.
      ingress       = "ALLOW_ALL"
      invokers      = { scheduler = module.iam.members["scheduler"] }
      min_instances = 0
      max_instances = 1
      concurrency   = 1
      cpu           = "1"
      memory        = "512Mi"
    }
    on_dead_letter = {
      service_account_email = module.iam.emails["on-dead-letter"]
      invokers              = { pubsub-push = module.iam.members["pubsub-push"] }
      min_instances         = var.event_functions.min_instances
      max_instances         = var.event_functions.max_instances
      concurrency           = var.event_functions.concurrency
      cpu                   = var.event_functions.cpu
      memory                = var.event_functions.memory
    }
    }, local.gke ? {} : {
    # Cloud Run workers only. One instance, one request at a time: two ticks never both see
    # "nothing running" and both start workers.
    dispatch = {
      service_account_email = module.iam.emails["dispatch"]
      # The API nudges dispatch from outside any VPC, so ingress is open; IAM admits only
      # Cloud Scheduler's and the API's accounts.
      ingress       = "ALLOW_ALL"
      invokers      = { scheduler = module.iam.members["scheduler"], api = module.iam.members["api"] }
      min_instances = 0
      max_instances = 1
      concurrency   = 1
      cpu           = "1"
      memory        = "512Mi"
      env = {
        GPUPIPE_DISPATCH_WORKER_JOB      = local.worker_job
        GPUPIPE_DISPATCH_JOBS_PER_WORKER = tostring(var.dispatch.jobs_per_worker)
        GPUPIPE_DISPATCH_MAX_WORKERS     = tostring(var.dispatch.max_workers)
      }
    }
  })

  depends_on = [google_project_service.this, google_artifact_registry_repository_iam_member.function_builds]
}
