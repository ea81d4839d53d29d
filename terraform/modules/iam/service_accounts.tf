resource "google_service_account" "this" {
  for_each = var.service_accounts

  project      = var.project_id
  account_id   = "${var.prefix}-${each.key}"
  display_name = "gpupipe ${each.key} (${var.prefix})"
  description  = each.value.description
}
