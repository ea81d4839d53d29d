"""The local stack: the official GCP emulators, fake-gcs-server, topology bootstrap."""
