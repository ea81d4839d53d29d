resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Ingress is per function (var.functions[*].ingress): ALLOW_ALL only for the public API, which authenticates every call with API keys, and for dispatch, which the API calls from outside any VPC and which IAM limits to two service accounts; on_upload and on_dead_letter are ALLOW_INTERNAL_ONLY.
  for_each = var.functions

  project  = var.project_id
  location = var.region
  name     = "${var.prefix}-${replace(each.key, "_", "-")}"
  labels   = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = each.key
    service_account   = var.build_service_account_id
    docker_repository = var.docker_repository
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = each.value.service_account_email
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    available_cpu                    = each.value.cpu
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout_seconds
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    environment_variables            = merge(var.common_env, each.value.env)

    secret_environment_variables {
      key        = "GPUPIPE_API_KEY_PEPPER"
      project_id = var.project_id
      secret     = data.google_secret_manager_secret.pepper.secret_id
      version    = "latest"
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.pepper, google_storage_bucket_iam_member.build_reads_source]
}
