"""checkov over terraform/ and k8s/: zero failed checks, every skip inline with a reason. The
repository runs are cached per session; the negative tests use tiny scratch directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.infra import checks


def test_checkov_passes_on_terraform(checkov_terraform: dict[str, Any]) -> None:
    assert checks.checkov_violations(checkov_terraform) == []
    # Not vacuous: the modules were really scanned (buckets, topics, cluster, functions...).
    assert checkov_terraform["summary"]["passed"] >= 50
    assert checkov_terraform["summary"]["resource_count"] >= 40


def test_checkov_passes_on_kubernetes(checkov_kubernetes: dict[str, Any]) -> None:
    assert checks.checkov_violations(checkov_kubernetes) == []
    assert checkov_kubernetes["summary"]["passed"] >= 50


def test_checkov_skips_are_few_and_explained(
    checkov_terraform: dict[str, Any], checkov_kubernetes: dict[str, Any]
) -> None:
    skipped = {
        s["check_id"]
        for report in (checkov_terraform, checkov_kubernetes)
        for s in report["results"].get("skipped_checks", [])
    }
    assert skipped <= {
        "CKV_GCP_62",  # bucket usage logs: Cloud Audit Logs instead
        "CKV_GCP_78",  # versioning per topology.yaml
        "CKV_GCP_83",  # CSEK on topics carrying ids only
        "CKV_GCP_124",  # public API ingress
        "CKV_GCP_102",  # allUsers invoker on the public API
        "CKV_GCP_12",  # network policy via Dataplane V2
        "CKV_GCP_65",  # Google Groups RBAC needs a Workspace domain
        "CKV_K8S_14",  # image placeholder, digest enforced by render_k8s
        "CKV_K8S_43",
        "CKV_K8S_35",  # settings from env vars
    }


def test_checkov_catches_a_public_bucket(tmp_path: Path) -> None:
    (tmp_path / "bucket.tf").write_text(
        'resource "google_storage_bucket" "open" {\n  name     = "x"\n  location = "US"\n}\n'
    )
    problems = checks.checkov_violations(checks.run_checkov(tmp_path, "terraform"))
    assert any("CKV_GCP_114" in p for p in problems), problems  # public access prevention


def test_a_skip_without_a_reason_is_a_violation(tmp_path: Path) -> None:
    (tmp_path / "bucket.tf").write_text(
        'resource "google_storage_bucket" "open" {\n'
        "  #checkov:skip=CKV_GCP_114\n"
        '  name                        = "x"\n'
        '  location                    = "US"\n'
        "  uniform_bucket_level_access = true\n"
        "}\n"
    )
    problems = checks.checkov_violations(checks.run_checkov(tmp_path, "terraform"))
    assert any("CKV_GCP_114 skipped" in p and "without a written reason" in p for p in problems), problems


def test_checkov_catches_a_privileged_pod(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: x\nspec:\n  containers:\n"
        "    - name: c\n      image: busybox\n      securityContext:\n        privileged: true\n"
    )
    problems = checks.checkov_violations(checks.run_checkov(tmp_path, "kubernetes"))
    assert any("CKV_K8S_16" in p for p in problems), problems  # privileged container
