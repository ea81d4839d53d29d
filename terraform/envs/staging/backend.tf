# The state bucket is created once by hand (docs/deploy.md, "State bucket") and passed at init:
#   terraform init -backend-config="bucket=<state bucket>"
terraform {
  backend "gcs" {
    prefix = "gpupipe/staging"
  }
}
