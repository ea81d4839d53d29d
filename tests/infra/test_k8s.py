"""The GKE manifests: rendered by ops/render_k8s.py, validated against the Kubernetes schemas
(kubernetes-validate, offline), KEDA objects checked for what the gcp-pubsub scaler needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ops import render_k8s
from tests.infra import checks
from tests.infra.conftest import K8S, TERRAFORM, replace_in

SETTINGS = {
    "GPUPIPE_ENV": "prod",
    "GOOGLE_CLOUD_PROJECT": "example-project",
    "GPUPIPE_JOBS_SUBSCRIPTION": "gpupipe-prod-jobs-worker",
    "GPUPIPE_WORKER_DEVICE": "cuda",
}
VALUES = {
    "WORKER_IMAGE": "us-central1-docker.pkg.dev/example-project/gpupipe/worker@sha256:" + "a" * 64,
    "WORKER_GSA": "gpupipe-prod-worker@example-project.iam.gserviceaccount.com",
    "JOBS_SUBSCRIPTION": "gpupipe-prod-jobs-worker",
    "JOBS_PER_WORKER": "8",
    "MAX_WORKERS": "4",
    "PEPPER_SECRET": "gpupipe-prod-api-key-pepper",
    "SETTINGS_CONFIGMAP": json.dumps(SETTINGS),
}


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    out = tmp_path / "k8s"
    render_k8s.render(K8S, VALUES, out)
    return out


def test_rendered_manifests_validate_against_kubernetes_schemas(rendered: Path) -> None:
    kinds = {doc["kind"] for _, doc in checks.load_manifests(rendered)}
    assert {"Namespace", "ServiceAccount", "Deployment", "ConfigMap", "NetworkPolicy"} <= kinds
    assert checks.kubernetes_schema_violations(rendered) == []


def test_schema_check_catches_a_bad_field(rendered: Path) -> None:
    replace_in(rendered / "deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: soon")
    replace_in(rendered / "serviceaccount.yaml", "automountServiceAccountToken: false", "automountToken: false")
    problems = checks.kubernetes_schema_violations(rendered)
    assert any("deployment.yaml" in p for p in problems) and any("serviceaccount.yaml" in p for p in problems)


def test_keda_objects_have_what_the_scaler_needs(rendered: Path) -> None:
    assert checks.keda_violations(rendered) == []
    so = next(doc for _, doc in checks.load_manifests(rendered) if doc["kind"] == "ScaledObject")
    meta = so["spec"]["triggers"][0]["metadata"]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (0, 4)
    assert meta == {
        "subscriptionName": "gpupipe-prod-jobs-worker",
        "mode": "SubscriptionSize",
        "value": "8",
        "activationValue": "0",
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("minReplicaCount: 0", "minReplicaCount: 1", "minReplicaCount"),
        ("mode: SubscriptionSize", "mode: Backlog", "mode"),
        ("subscriptionName: gpupipe-prod-jobs-worker", "topicName: gpupipe-prod-jobs", "subscriptionName"),
        ('activationValue: "0"', "activationValue: zero", "activationValue"),
        ("    name: gpupipe-worker\n  minReplicaCount", "    name: gpupipe-wrker\n  minReplicaCount", "scaleTargetRef"),
        ("provider: gcp", "provider: none", "podIdentity"),
    ],
)
def test_keda_check_catches_planted_violations(rendered: Path, old: str, new: str, expected: str) -> None:
    replace_in(rendered / "keda.yaml", old, new)
    assert any(expected in p for p in checks.keda_violations(rendered))


def test_workload_identity_names_match_terraform(rendered: Path) -> None:
    docs = {doc["kind"]: doc for _, doc in checks.load_manifests(rendered)}
    sa = docs["ServiceAccount"]
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == VALUES["WORKER_GSA"]
    ksa = f"{sa['metadata']['namespace']}/{sa['metadata']['name']}"
    workers_tf = (TERRAFORM / "modules/stack/workers.tf").read_text()
    assert f'kubernetes_service_account = "{ksa}"' in workers_tf
    assert docs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_worker_pod_asks_for_an_l4_and_runs_as_non_root(rendered: Path) -> None:
    deployment = next(doc for _, doc in checks.load_manifests(rendered) if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == VALUES["WORKER_IMAGE"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "model-cache", "mountPath": "/var/cache/gpupipe/models"} in container["volumeMounts"]


def test_settings_become_a_configmap_without_the_pepper(rendered: Path) -> None:
    configmap = yaml.safe_load((rendered / "settings-configmap.yaml").read_text())
    assert configmap["data"] == SETTINGS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MAX_WORKERS": None}, "no value for MAX_WORKERS"),
        ({"UNUSED": "x"}, "values no template uses: UNUSED"),
        ({"SETTINGS_CONFIGMAP": json.dumps({"GPUPIPE_NOPE": "1"})}, "does not read: GPUPIPE_NOPE"),
        ({"SETTINGS_CONFIGMAP": json.dumps({"GPUPIPE_API_KEY_PEPPER": "s"})}, "never the ConfigMap"),
        ({"WORKER_IMAGE": "example/worker:latest"}, "digest"),
    ],
)
def test_render_refuses_values_that_do_not_fit(tmp_path: Path, change: dict[str, str | None], message: str) -> None:
    values = {k: v for k, v in {**VALUES, **change}.items() if v is not None}
    with pytest.raises(render_k8s.RenderError, match=message):
        render_k8s.render(K8S, values, tmp_path / "out")


def test_render_cli_reads_terraform_output_json(tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"sensitive": False, "type": "object", "value": VALUES}))
    assert render_k8s.main(["--values", str(values), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/keda.yaml").is_file()
    values.write_text("null")
    assert render_k8s.main(["--values", str(values), "--out", str(tmp_path / "out2")]) == 2


def test_templates_without_placeholders_left_are_not_accepted(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(K8S, templates)
    replace_in(templates / "keda.yaml", "${JOBS_SUBSCRIPTION}", "${JOBS_SUBSCRIPTON}")
    with pytest.raises(render_k8s.RenderError, match="JOBS_SUBSCRIPTON"):
        render_k8s.render(templates, VALUES, tmp_path / "out")
