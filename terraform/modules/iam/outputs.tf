output "emails" {
  description = "Service account emails by component."
  value       = { for name, sa in google_service_account.this : name => sa.email }
}

output "members" {
  description = "IAM members (serviceAccount:EMAIL) by component."
  value       = { for name, sa in google_service_account.this : name => sa.member }
}

output "ids" {
  description = "Service account resource ids (projects/P/serviceAccounts/EMAIL) by component, for grants on the accounts themselves."
  value       = { for name, sa in google_service_account.this : name => sa.name }
}
