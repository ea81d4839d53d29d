output "urls" {
  description = "HTTPS URLs by function target name."
  value       = { for name, f in google_cloudfunctions2_function.this : name => f.service_config[0].uri }
}

output "names" {
  description = "Deployed function (and Cloud Run service) names by target name."
  value       = { for name, f in google_cloudfunctions2_function.this : name => f.name }
}

output "pepper_secret_id" {
  description = "Secret Manager secret id of the API key pepper."
  value       = data.google_secret_manager_secret.pepper.secret_id
}
