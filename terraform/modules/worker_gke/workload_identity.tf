# Each Kubernetes service account may act as exactly one Google service account.
resource "google_service_account_iam_member" "workload_identity" {
  for_each = var.workload_identities

  service_account_id = each.value.service_account_id
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${each.value.kubernetes_service_account}]"
}
