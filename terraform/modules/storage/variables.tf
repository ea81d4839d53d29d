variable "project_id" {
  description = "Project that holds the buckets."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix for every bucket name."
  type        = string
  nullable    = false
}

variable "location" {
  description = "Bucket location (a region close to the GPU workers, e.g. us-central1)."
  type        = string
  nullable    = false
}

variable "topology_file" {
  description = "Path of topology.yaml; buckets and notifications come only from it."
  type        = string
  nullable    = false
}

variable "notification_topic_ids" {
  description = "Topic ids (projects/P/topics/T) by logical topic name, for the topology's bucket notifications."
  type        = map(string)
  nullable    = false
}

variable "labels" {
  description = "Labels for every bucket."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete non-empty buckets (staging only)."
  type        = bool
  nullable    = false
  default     = false
}

variable "noncurrent_version_days" {
  description = "Days a replaced object version is kept in a versioned bucket (models) before deletion; the rollback window for overwritten files."
  type        = number
  nullable    = false
  default     = 90
}

variable "bucket_access" {
  description = "Role grants on single buckets, keyed by a stable name (\"<bucket>/<component>\"); bucket is the logical name."
  type = map(object({
    bucket = string
    role   = string
    member = string
  }))
  nullable = false
  default  = {}

  validation {
    condition = alltrue([
      for grant in values(var.bucket_access) : contains(["roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectUser"], grant.role)
    ])
    error_message = "Bucket grants are limited to objectViewer, objectCreator and objectUser."
  }
}
