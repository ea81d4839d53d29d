variable "project_id" {
  description = "The GCP project gpupipe is deployed to."
  type        = string
  nullable    = false
}

variable "environment" {
  description = "GPUPIPE_ENV of every deployable: staging or prod."
  type        = string
  nullable    = false

  validation {
    condition     = contains(["staging", "prod"], var.environment)
    error_message = "environment must be staging or prod."
  }
}

variable "prefix" {
  description = "Deployment prefix; bucket names built from it are global, so make it unique to your organisation."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of functions, workers, buckets and the cluster; it must offer L4 GPUs (e.g. us-central1)."
  type        = string
  nullable    = false
}

variable "firestore_location" {
  description = "Firestore location (region or multi-region); fixed once created."
  type        = string
  nullable    = false
}

variable "topology_file" {
  description = "Path of the repository's topology.yaml."
  type        = string
  nullable    = false
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "artifact_repository" {
  description = "Name of the Docker Artifact Registry repository in var.region that holds the worker image and the functions' build images (created at bootstrap, docs/deploy.md)."
  type        = string
  nullable    = false
}

variable "worker_image" {
  description = "The worker image, by digest (REGION-docker.pkg.dev/PROJECT/REPO/worker@sha256:...)."
  type        = string
  nullable    = false
}

variable "functions_source" {
  description = "Path of the functions' source zip made by ops/package_functions.py."
  type        = string
  nullable    = false
}

variable "worker_platform" {
  description = "Where GPU workers run: \"cloudrun\" (a Cloud Run job started by the dispatcher) or \"gke\" (a Deployment scaled by KEDA)."
  type        = string
  nullable    = false
  default     = "cloudrun"

  validation {
    condition     = contains(["cloudrun", "gke"], var.worker_platform)
    error_message = "worker_platform must be cloudrun or gke."
  }
}

variable "api" {
  description = "Sizing of the public API function."
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

variable "event_functions" {
  description = "Sizing of on_upload and on_dead_letter."
  type = object({
    min_instances = optional(number, 0)
    max_instances = optional(number, 10)
    concurrency   = optional(number, 4)
    cpu           = optional(string, "1")
    memory        = optional(string, "1Gi")
  })
  nullable = false
  default  = {}
}

variable "dispatch" {
  description = "Cloud Run workers: jobs one worker is expected to drain (backlog / this = workers wanted) and the cap on concurrent workers."
  type = object({
    jobs_per_worker = optional(number, 8)
    max_workers     = optional(number, 4)
    schedule        = optional(string, "* * * * *")
  })
  nullable = false
  default  = {}

  validation {
    condition     = var.dispatch.jobs_per_worker >= 1 && var.dispatch.max_workers >= 0
    error_message = "jobs_per_worker must be at least 1 and max_workers at least 0."
  }
}

variable "recovery" {
  description = "How lost deliveries are recovered (core/reconciler.py): the reconcile schedule, and how long a job may stay queued before it is published again."
  type = object({
    schedule             = optional(string, "* * * * *")
    queued_after_seconds = optional(number, 120)
    max_attempts         = optional(number, 5)
  })
  nullable = false
  default  = {}

  validation {
    condition     = var.recovery.queued_after_seconds > 0 && var.recovery.max_attempts >= 1
    error_message = "queued_after_seconds must be positive and max_attempts at least 1."
  }
}

variable "worker" {
  description = "Worker process settings shared by both platforms."
  type = object({
    exit_when_idle_seconds = optional(number, 120)
    max_batch_size         = optional(number, 4)
    default_model          = optional(string, "sd15")
  })
  nullable = false
  default  = {}
}

variable "gke" {
  description = "GKE worker platform settings (used when worker_platform is gke)."
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
  description = "Alert thresholds and where alerts go."
  type = object({
    queue_age_slo_seconds    = optional(number, 600)
    worker_errors_per_minute = optional(number, 1)
    notification_channels    = optional(list(string), [])
  })
  nullable = false
  default  = {}
}

variable "deletion_protection" {
  description = "Protect the database, worker job and cluster from deletion (false only for throwaway staging projects)."
  type        = bool
  nullable    = false
  default     = true
}
