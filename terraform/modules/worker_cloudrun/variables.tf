variable "project_id" {
  description = "Project that holds the worker job."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the Cloud Run job; it must offer L4 GPUs to Cloud Run (e.g. us-central1, europe-west4)."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix; the job is \"<prefix>-worker\"."
  type        = string
  nullable    = false
}

variable "labels" {
  description = "Labels for the job and the scheduler job."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "image" {
  description = "Worker image (gpu_worker/Dockerfile), preferably by digest."
  type        = string
  nullable    = false
}

variable "service_account_email" {
  description = "The worker's own service account."
  type        = string
  nullable    = false
}

variable "env" {
  description = "Environment variables of the worker (core.settings.ENV_VARS names)."
  type        = map(string)
  nullable    = false
}

variable "pepper_secret_id" {
  description = "Secret Manager secret id holding the API key pepper (GPUPIPE_API_KEY_PEPPER)."
  type        = string
  nullable    = false
}

variable "exit_when_idle_seconds" {
  description = "A worker task exits after this many seconds without a message (`python -m gpu_worker --exit-when-idle`), so an idle GPU is not billed."
  type        = number
  nullable    = false
  default     = 120
}

variable "task_timeout_seconds" {
  description = "Hard limit on one worker task; the dispatcher starts fresh ones while backlog remains."
  type        = number
  nullable    = false
  default     = 3600
}

variable "gpu" {
  description = "GPU of each task: accelerator (Cloud Run GPU type) and whether to give up zonal redundancy for a cheaper, best-effort GPU."
  type = object({
    accelerator               = optional(string, "nvidia-l4")
    zonal_redundancy_disabled = optional(bool, true)
  })
  nullable = false
  default  = {}
}

variable "resources" {
  description = "CPU and memory of each task (an L4 task needs at least 4 CPU and 16Gi) and the in-memory model cache size."
  type = object({
    cpu              = optional(string, "8")
    memory           = optional(string, "32Gi")
    model_cache_size = optional(string, "12Gi")
  })
  nullable = false
  default  = {}
}

variable "model_cache_dir" {
  description = "Where the worker caches model versions (GPUPIPE_MODEL_CACHE_DIR; the Dockerfile declares the same path)."
  type        = string
  nullable    = false
  default     = "/var/cache/gpupipe/models"
}

variable "launch_stage" {
  description = "Launch stage the job is created with; GPU jobs needed BETA when this was written."
  type        = string
  nullable    = false
  default     = "BETA"
}

variable "deletion_protection" {
  description = "Refuse to delete the job from Terraform."
  type        = bool
  nullable    = false
  default     = true
}

variable "dispatcher" {
  description = <<-EOT
    The dispatch function that starts executions: its URL, the account that runs it (granted
    to start and list this job's executions), the account Cloud Scheduler calls it as, and how
    often (cron, every minute by default).
  EOT
  type = object({
    url                             = string
    service_account_email           = string
    scheduler_service_account_email = string
    schedule                        = optional(string, "* * * * *")
    time_zone                       = optional(string, "Etc/UTC")
  })
  nullable = false
}
