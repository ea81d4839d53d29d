variable "project_id" {
  description = "Project that holds the service accounts."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix; account ids are \"<prefix>-<component>\"."
  type        = string
  nullable    = false
}

variable "service_accounts" {
  description = <<-EOT
    One service account per component, keyed by component name. project_roles lists only the
    roles GCP cannot grant on a single resource (log and metric writing, Firestore data access,
    reading Cloud Monitoring); every other grant lives next to its resource in its own module.
  EOT
  type = map(object({
    description   = string
    project_roles = optional(list(string), [])
  }))
  nullable = false

  validation {
    condition = alltrue(flatten([
      for sa in values(var.service_accounts) : [for role in sa.project_roles : !contains(["roles/owner", "roles/editor", "roles/viewer"], role)]
    ]))
    error_message = "Primitive roles (owner, editor, viewer) are not allowed."
  }
  validation {
    condition     = alltrue([for name in keys(var.service_accounts) : can(regex("^[a-z][a-z0-9-]{1,14}$", name))])
    error_message = "Component names must be 2-15 lowercase letters, digits or dashes."
  }
}
