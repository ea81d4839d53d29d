locals {
  project_grants = merge([
    for name, sa in var.service_accounts : { for role in sa.project_roles : "${name}/${role}" => { account = name, role = role } }
  ]...)
}

resource "google_project_iam_member" "this" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.this[each.value.account].member
}
