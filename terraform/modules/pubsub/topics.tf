resource "google_pubsub_topic" "this" {
  #checkov:skip=CKV_GCP_83:Messages carry identifiers only (a job id, an object name), never prompts or images; Google-managed encryption at rest is enough and customer keys would add a KMS dependency to every publish.
  for_each = module.topology.topics

  project = var.project_id
  name    = each.value.name
  labels  = var.labels
}
