# The build image for cloudbuild.yaml: Python 3.11, make, the Pub/Sub and Firestore emulators
# (with Java 17), gcloud, kubectl and Terraform, so `make test` runs in Cloud Build exactly as
# it does on a workstation, and the deploy steps have their tools.
FROM hashicorp/terraform:1.11.4 AS terraform

FROM google/cloud-sdk:524.0.0
ENV DEBIAN_FRONTEND=noninteractive
# The cloud-sdk image's Debian release fixes these packages' versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        make python3 python3-venv python3-dev build-essential openjdk-17-jre-headless \
        google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator kubectl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=terraform /bin/terraform /usr/local/bin/terraform
WORKDIR /workspace
