# The functions deploy from source: the zip Cloud Build packs from this repository, uploaded
# under its content hash so that a changed source redeploys and an unchanged one does not.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs written by Terraform; object access is covered by Cloud Audit Logs.
  project                     = var.project_id
  name                        = "${var.prefix}-functions-source"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "functions-${filemd5(var.source_archive)}.zip"
  source = var.source_archive
}

# The build account reads the source it builds, from this bucket only.
resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${element(split("/", var.build_service_account_id), 3)}"
}
