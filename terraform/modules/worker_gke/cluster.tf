resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_12:Network policy is enforced by GKE Dataplane V2 (datapath_provider = ADVANCED_DATAPATH), which must not be combined with the legacy network_policy block this check looks for.
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Google Workspace or Cloud Identity domain that a fresh project may not have; access is granted with IAM roles on the project (docs/deploy.md).
  project             = var.project_id
  location            = var.region
  node_locations      = var.node_locations
  name                = "${var.prefix}-workers"
  deletion_protection = var.deletion_protection
  resource_labels     = var.labels

  network         = google_compute_network.this.id
  subnetwork      = google_compute_subnetwork.nodes.id
  networking_mode = "VPC_NATIVE"

  # Node pools are managed below; the default one is removed at creation.
  remove_default_node_pool = true
  initial_node_count       = 1

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.network.control_plane_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        display_name = cidr_blocks.key
        cidr_block   = cidr_blocks.value
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  release_channel {
    channel = var.release_channel
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  datapath_provider = "ADVANCED_DATAPATH"

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }

  # The first node pool's settings while the default pool exists for a moment at creation.
  node_config {
    service_account = var.node_service_account_email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  lifecycle {
    ignore_changes = [node_config]
  }
}
