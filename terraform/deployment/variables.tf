variable "project_id" {
  description = "The GCP project to deploy to (passed by Cloud Build as -var project_id=$PROJECT_ID; never written in this repository)."
  type        = string
  nullable    = false
}

variable "environment" {
  description = "GPUPIPE_ENV of the deployment (staging or prod); names the environments/<env>.tfvars file it is set in."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix for every resource name; globally unique for bucket names."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region with L4 GPUs for Cloud Run or GKE (e.g. us-central1)."
  type        = string
  nullable    = false
}

variable "firestore_location" {
  description = "Firestore location; fixed once the database exists."
  type        = string
  nullable    = false
}

variable "artifact_repository" {
  description = "Docker Artifact Registry repository (in region) created at bootstrap."
  type        = string
  nullable    = false
}

variable "worker_image" {
  description = "Worker image by digest, set by Cloud Build after it pushes the image."
  type        = string
  nullable    = false
}

variable "functions_source" {
  description = "Path of the functions' source zip made by ops/package_functions.py."
  type        = string
  nullable    = false
}

variable "worker_platform" {
  description = "cloudrun or gke."
  type        = string
  nullable    = false
}

variable "dispatch" {
  description = "Cloud Run dispatcher sizing: jobs per worker, worker cap, schedule."
  type = object({
    jobs_per_worker = optional(number, 8)
    max_workers     = optional(number, 4)
    schedule        = optional(string, "* * * * *")
  })
  nullable = false
  default  = {}
}

variable "recovery" {
  description = "Recovery of lost deliveries (the reconcile schedule, when a queued job is published again, attempts before it fails)."
  type = object({
    schedule             = optional(string, "* * * * *")
    queued_after_seconds = optional(number, 120)
    max_attempts         = optional(number, 5)
  })
  nullable = false
  default  = {}
}

variable "api" {
  description = "Sizing of the API function."
  type = object({
    min_instances = optional(number, 0)
    max_instances = optional(number, 20)
    concurrency   = optional(number, 40)
    cpu           = optional(string, "1")
    memory        = optional(string, "1Gi")
  })
  nullable = false
  default  = {}
}

variable "gke" {
  description = "GKE settings (worker_platform = gke)."
  type = object({
    node_locations             = optional(list(string), [])
    release_channel            = optional(string, "REGULAR")
    gpu_max_nodes              = optional(number, 4)
    gpu_spot                   = optional(bool, false)
    master_authorized_networks = optional(map(string), {})
  })
  nullable = false
  default  = {}
}

variable "monitoring" {
  description = "Alert thresholds and notification channels."
  type = object({
    queue_age_slo_seconds    = optional(number, 600)
    worker_errors_per_minute = optional(number, 1)
    notification_channels    = optional(list(string), [])
  })
  nullable = false
  default  = {}
}

variable "deletion_protection" {
  description = "Protect stateful resources from deletion."
  type        = bool
  nullable    = false
  default     = true
}
