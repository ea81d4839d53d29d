# Partial configuration: the state prefix comes from environments/<env>.gcs.tfbackend and the
# state bucket (created once by hand, docs/deploy.md "State bucket") from the command line:
#   terraform init -reconfigure \
#     -backend-config=environments/$ENV.gcs.tfbackend -backend-config="bucket=$STATE_BUCKET"
terraform {
  backend "gcs" {}
}
