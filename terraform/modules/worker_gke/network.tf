resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = "${var.prefix}-gke"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "nodes" {
  project                  = var.project_id
  region                   = var.region
  name                     = "${var.prefix}-gke-nodes"
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.network.nodes_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.network.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.network.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Only the control plane may open connections to the nodes beyond GKE's own rules: KEDA's
# metrics API server and admission webhooks. Everything else inbound is denied.
resource "google_compute_firewall" "control_plane_to_keda" {
  project       = var.project_id
  name          = "${var.prefix}-gke-control-plane-keda"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = [var.network.control_plane_cidr]

  allow {
    protocol = "tcp"
    ports    = ["6443", "9443"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "deny_ingress" {
  project       = var.project_id
  name          = "${var.prefix}-gke-deny-ingress"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes have no public address: NAT for images outside Google (KEDA), Private Google
# Access (above) for Google APIs and Artifact Registry.
resource "google_compute_router" "this" {
  project = var.project_id
  region  = var.region
  name    = "${var.prefix}-gke"
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  project                            = var.project_id
  region                             = var.region
  name                               = "${var.prefix}-gke"
  router                             = google_compute_router.this.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
