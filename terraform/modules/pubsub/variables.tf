variable "project_id" {
  description = "Project that holds the topics and subscriptions."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Deployment prefix for every resource name."
  type        = string
  nullable    = false
}

variable "topology_file" {
  description = "Path of topology.yaml; topics, subscriptions, retry and dead-letter policies come only from it."
  type        = string
  nullable    = false
}

variable "labels" {
  description = "Labels for every topic and subscription."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "push_endpoints" {
  description = "Subscriptions (by logical name) that push to an HTTPS endpoint with an OIDC token; the others are pull subscriptions."
  type = map(object({
    url                   = string
    service_account_email = string
  }))
  nullable = false
  default  = {}
}

variable "topic_publishers" {
  description = "Publisher grants on single topics, keyed by a stable name (\"<topic>/<component>\")."
  type = map(object({
    topic  = string
    member = string
  }))
  nullable = false
  default  = {}
}

variable "subscription_subscribers" {
  description = "Subscriber grants on single subscriptions, keyed by a stable name (\"<subscription>/<component>\")."
  type = map(object({
    subscription = string
    member       = string
  }))
  nullable = false
  default  = {}
}
