"""Helper programs Cloud Build runs (cloudbuild.yaml); each is tested under tests/infra."""
