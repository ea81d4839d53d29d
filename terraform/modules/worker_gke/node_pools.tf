locals {
  node_pools = {
    system = {
      machine_type = var.system_pool.machine_type
      min_nodes    = var.system_pool.min_nodes
      max_nodes    = var.system_pool.max_nodes
      spot         = false
      disk_size_gb = 50
      gpu          = null
    }
    gpu = {
      machine_type = var.gpu_pool.machine_type
      min_nodes    = var.gpu_pool.min_nodes
      max_nodes    = var.gpu_pool.max_nodes
      spot         = var.gpu_pool.spot
      disk_size_gb = var.gpu_pool.disk_size_gb
      gpu          = var.gpu_pool.accelerator_type
    }
  }
}

resource "google_container_node_pool" "this" {
  for_each = local.node_pools

  project        = var.project_id
  location       = var.region
  node_locations = var.node_locations
  cluster        = google_container_cluster.this.name
  name           = each.key

  autoscaling {
    total_min_node_count = each.value.min_nodes
    total_max_node_count = each.value.max_nodes
    location_policy      = each.value.gpu == null ? "BALANCED" : "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = each.value.machine_type
    spot            = each.value.spot
    disk_size_gb    = each.value.disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = var.node_service_account_email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = var.labels
    labels          = { "gpupipe/pool" = each.key }

    metadata = {
      disable-legacy-endpoints = "true"
    }

    dynamic "guest_accelerator" {
      for_each = each.value.gpu == null ? [] : [each.value.gpu]
      content {
        type  = guest_accelerator.value
        count = 1
        gpu_driver_installation_config {
          gpu_driver_version = "LATEST"
        }
      }
    }

    # Only pods that ask for a GPU (and tolerate this) land on the GPU nodes.
    dynamic "taint" {
      for_each = each.value.gpu == null ? [] : [each.value.gpu]
      content {
        key    = "nvidia.com/gpu"
        value  = "present"
        effect = "NO_SCHEDULE"
      }
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}
