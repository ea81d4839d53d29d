# Pure expressions over topology.yaml: no provider, so tests can evaluate this module with a
# real `terraform apply` offline and compare its outputs with the Python side.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"
}
