# The pepper secret and its value are created at bootstrap (docs/deploy.md, step 3), before the
# first apply: a function whose secret has no version cannot deploy, and the value must never
# pass through Terraform state. Terraform only grants access to it.
data "google_secret_manager_secret" "pepper" {
  project   = var.project_id
  secret_id = var.pepper_secret_id
}

locals {
  pepper_accessors = merge(
    { for name, f in var.functions : name => "serviceAccount:${f.service_account_email}" },
    var.pepper_accessors,
  )
}

resource "google_secret_manager_secret_iam_member" "pepper" {
  for_each = local.pepper_accessors

  project   = var.project_id
  secret_id = data.google_secret_manager_secret.pepper.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}
