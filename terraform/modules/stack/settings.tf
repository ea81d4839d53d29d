module "topology" {
  source = "../topology"

  topology_file = var.topology_file
  prefix        = var.prefix
}

locals {
  # Deterministic function URLs: a function's own settings may name it without a cycle.
  function_url = { for name in ["api", "dispatch", "reconcile"] : name => "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.prefix}-${name}" }
  worker_job   = "projects/${var.project_id}/locations/${var.region}/jobs/${var.prefix}-worker"

  # What core.settings.Settings.from_env reads (names from core/settings.py ENV_VARS).
  settings_env = merge(module.topology.settings_env, {
    GPUPIPE_ENV                   = var.environment
    GOOGLE_CLOUD_PROJECT          = var.project_id
    GPUPIPE_BACKEND               = "gcp"
    GPUPIPE_LOG_FORMAT            = "json"
    GPUPIPE_API_URL               = local.function_url["api"]
    GPUPIPE_DEFAULT_MODEL         = var.worker.default_model
    GPUPIPE_WORKER_MODEL          = var.worker.default_model
    GPUPIPE_WORKER_MAX_BATCH_SIZE = tostring(var.worker.max_batch_size)

    GPUPIPE_RECOVERY_QUEUED_AFTER_SECONDS = tostring(var.recovery.queued_after_seconds)
    GPUPIPE_RECOVERY_MAX_ATTEMPTS         = tostring(var.recovery.max_attempts)
  })
}
