locals {
  invokers = merge([
    for name, f in var.functions : { for component, member in f.invokers : "${name}/${component}" => { function = name, member = member } }
  ]...)
}

# A gen2 function is a Cloud Run service; invoking it is run.invoker on that service alone.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "public" {
  #checkov:skip=CKV_GCP_102:The public HTTP API must be reachable without Google credentials; it authenticates every call (except /healthz and /openapi.json) with its own API keys.
  for_each = { for name, f in var.functions : name => f if f.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
