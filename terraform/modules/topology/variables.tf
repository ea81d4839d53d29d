variable "topology_file" {
  description = "Path of topology.yaml, the one description of topics, subscriptions, buckets and notifications shared with the local emulator suite."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix; every logical name in the topology becomes \"<prefix>-<name>\" (core.settings.resource_names does the same)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,14}$", var.prefix))
    error_message = "prefix must be 3-15 characters of lowercase letters, digits and dashes, starting with a letter (service account ids built from it are limited to 30 characters)."
  }
}
