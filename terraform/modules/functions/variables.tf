variable "project_id" {
  description = "Project that holds the functions."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the functions (and of their Cloud Run services)."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix for function, bucket and secret names."
  type        = string
  nullable    = false
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "source_archive" {
  description = "Path of the functions' source zip built from this repository by ops/package_functions.py (main.py at its root, requirements.txt beside it)."
  type        = string
  nullable    = false
}

variable "docker_repository" {
  description = "Artifact Registry repository id (projects/P/locations/R/repositories/N) the function builds push their images to."
  type        = string
  nullable    = false
}

variable "build_service_account_id" {
  description = "Resource id (projects/P/serviceAccounts/EMAIL) of the account Cloud Build uses to build the functions."
  type        = string
  nullable    = false
}

variable "common_env" {
  description = "Environment variables every function gets (core.settings.ENV_VARS names)."
  type        = map(string)
  nullable    = false
}

variable "functions" {
  description = <<-EOT
    The functions, keyed by functions-framework target name (functions/main.py). public: anyone
    may invoke it (the API authenticates callers itself with API keys); otherwise only the listed
    invokers may. ingress: ALLOW_INTERNAL_ONLY for functions only Pub/Sub push and Cloud
    Scheduler call; ALLOW_ALL where a caller outside a VPC (another function) must reach it.
  EOT
  type = map(object({
    service_account_email = string
    public                = optional(bool, false)
    ingress               = optional(string, "ALLOW_INTERNAL_ONLY")
    invokers              = optional(map(string), {})
    min_instances         = optional(number, 0)
    max_instances         = optional(number, 10)
    concurrency           = optional(number, 1)
    cpu                   = optional(string, "1")
    memory                = optional(string, "512Mi")
    timeout_seconds       = optional(number, 60)
    env                   = optional(map(string), {})
  }))
  nullable = false

  validation {
    condition     = alltrue([for f in values(var.functions) : f.max_instances >= f.min_instances && f.max_instances >= 1])
    error_message = "max_instances must be at least 1 and at least min_instances."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], f.ingress)])
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : !f.public || f.ingress == "ALLOW_ALL"])
    error_message = "A public function needs ingress ALLOW_ALL."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.concurrency == 1 || tonumber(f.cpu) >= 1])
    error_message = "Concurrency above 1 needs at least one CPU."
  }
}

variable "pepper_secret_id" {
  description = "Secret Manager secret (created at bootstrap, with a version) holding the API key pepper."
  type        = string
  nullable    = false
}

variable "pepper_accessors" {
  description = "Members that may read the API key pepper secret, keyed by component (the functions' own accounts are added automatically)."
  type        = map(string)
  nullable    = false
  default     = {}
}
