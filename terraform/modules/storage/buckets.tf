resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Object access is recorded by Cloud Audit Logs (Data Access logs for storage.googleapis.com, enabled in docs/deploy.md); legacy usage-log buckets would add a bucket that itself needs logging.
  #checkov:skip=CKV_GCP_78:Versioning follows topology.yaml per bucket: on for models (rollback), off for inbox (one upload is one immutable batch) and outputs (create-only writes, deleted after delete_after_days).
  for_each = module.topology.buckets

  project                     = var.project_id
  name                        = each.value.name
  location                    = var.location
  labels                      = var.labels
  force_destroy               = var.force_destroy
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = each.value.versioning
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.delete_after_days == null ? [] : [each.value.delete_after_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.versioning ? [var.noncurrent_version_days] : []
    content {
      condition {
        days_since_noncurrent_time = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
}
