output "cluster_name" {
  description = "Name of the GKE cluster (for `gcloud container clusters get-credentials`)."
  value       = google_container_cluster.this.name
}

output "cluster_location" {
  description = "Location (region) of the cluster."
  value       = google_container_cluster.this.location
}
