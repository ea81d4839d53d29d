variable "project_id" {
  description = "Project that holds the cluster."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the network and the (regional) cluster."
  type        = string
  nullable    = false
}

variable "node_locations" {
  description = "Zones of the region the nodes run in; pick zones that have L4 GPUs (g2 machines)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.node_locations) >= 1
    error_message = "Name at least one zone."
  }
}

variable "prefix" {
  description = "Deployment prefix for cluster, network and node pool names."
  type        = string
  nullable    = false
}

variable "labels" {
  description = "Resource labels for the cluster and its nodes."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "network" {
  description = "CIDR ranges of the cluster's own VPC: nodes, pods, services and the control plane's peering range."
  type = object({
    nodes_cidr         = optional(string, "10.10.0.0/20")
    pods_cidr          = optional(string, "10.20.0.0/16")
    services_cidr      = optional(string, "10.30.0.0/20")
    control_plane_cidr = optional(string, "172.16.0.0/28")
  })
  nullable = false
  default  = {}
}

variable "master_authorized_networks" {
  description = "CIDR blocks (by display name) allowed to reach the control plane's public endpoint, e.g. the operator's network."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  nullable    = false
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "system_pool" {
  description = "The always-on pool for system pods and KEDA."
  type = object({
    machine_type = optional(string, "e2-standard-2")
    min_nodes    = optional(number, 1)
    max_nodes    = optional(number, 3)
  })
  nullable = false
  default  = {}
}

variable "gpu_pool" {
  description = "The autoscaling GPU pool the workers run on; min_nodes 0 lets it scale to zero with the workers."
  type = object({
    machine_type     = optional(string, "g2-standard-8")
    accelerator_type = optional(string, "nvidia-l4")
    min_nodes        = optional(number, 0)
    max_nodes        = optional(number, 4)
    spot             = optional(bool, false)
    disk_size_gb     = optional(number, 200)
  })
  nullable = false
  default  = {}

  validation {
    condition     = var.gpu_pool.min_nodes >= 0 && var.gpu_pool.max_nodes >= var.gpu_pool.min_nodes
    error_message = "gpu_pool needs 0 <= min_nodes <= max_nodes."
  }
}

variable "node_service_account_email" {
  description = "The nodes' own service account (log and metric writing, image pulls)."
  type        = string
  nullable    = false
}

variable "workload_identities" {
  description = <<-EOT
    Kubernetes service accounts ("namespace/name") that act as a Google service account through
    Workload Identity, keyed by component: the worker, and the KEDA operator that reads the
    subscription backlog from Cloud Monitoring.
  EOT
  type = map(object({
    kubernetes_service_account = string
    service_account_id         = string
  }))
  nullable = false
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster from Terraform."
  type        = bool
  nullable    = false
  default     = true
}
