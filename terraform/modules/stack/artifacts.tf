data "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
}

locals {
  image_readers = merge(
    { "fn-build" = module.iam.members["fn-build"] },
    local.gke ? { "gke-nodes" = module.iam.members["gke-nodes"] } : {},
  )
}

resource "google_artifact_registry_repository_iam_member" "function_builds" {
  project    = var.project_id
  location   = var.region
  repository = data.google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = module.iam.members["fn-build"]
}

resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each = local.image_readers

  project    = var.project_id
  location   = var.region
  repository = data.google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}
