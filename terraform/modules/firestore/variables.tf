variable "project_id" {
  description = "Project that holds the Firestore database."
  type        = string
  nullable    = false
}

variable "location" {
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5); cannot change after creation."
  type        = string
  nullable    = false
}

variable "database_name" {
  description = "Database id; gpupipe's clients use the default database."
  type        = string
  nullable    = false
  default     = "(default)"
}

variable "delete_protection" {
  description = "Refuse to delete the database (turn off only to tear a staging project down)."
  type        = bool
  nullable    = false
  default     = true
}

variable "composite_indexes" {
  description = "Composite indexes keyed by a stable name; fields in query order ({field, order} with order ASCENDING or DESCENDING)."
  type = map(object({
    collection = string
    fields = list(object({
      field = string
      order = optional(string, "ASCENDING")
    }))
  }))
  nullable = false

  validation {
    condition     = alltrue([for index in values(var.composite_indexes) : length(index.fields) >= 2])
    error_message = "A composite index needs at least two fields (Firestore builds single-field indexes itself)."
  }
  validation {
    condition = alltrue(flatten([
      for index in values(var.composite_indexes) : [for f in index.fields : contains(["ASCENDING", "DESCENDING"], f.order)]
    ]))
    error_message = "order must be ASCENDING or DESCENDING."
  }
}

variable "ttl_fields" {
  description = "Collections whose documents Firestore deletes after the timestamp in the named field, keyed by collection."
  type        = map(string)
  nullable    = false
  default     = {}
}
