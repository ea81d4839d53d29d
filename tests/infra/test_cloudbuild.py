"""cloudbuild.yaml parsed and checked: named steps, declared substitutions, `make test` first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.infra import checks
from tests.infra.conftest import REPO, replace_in

CLOUDBUILD = REPO / "cloudbuild.yaml"


def test_cloudbuild_is_consistent() -> None:
    assert checks.cloudbuild_violations(CLOUDBUILD) == []


def test_cloudbuild_builds_tests_deploys_and_smoke_tests() -> None:
    steps = yaml.safe_load(CLOUDBUILD.read_text())["steps"]
    ids = [s["id"] for s in steps]
    assert ids.index("test") < ids.index("worker-image") < ids.index("terraform-plan") < ids.index("terraform-apply")
    assert ids[-1] == "smoke-test"
    script = "\n".join(" ".join(map(str, s.get("args", []))) for s in steps)
    for needed in ("gpu_worker/Dockerfile", "ops.package_functions", "terraform plan", "terraform apply",
                   "ops.render_k8s", "ops.smoke_test", "-backend-config", "-var-file"):  # fmt: skip
        assert needed in script, needed
    # Every helper module the build calls exists in the repository.
    for module in ("ops.package_functions", "ops.render_k8s", "ops.smoke_test", "ops.deploy_outputs"):
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module


def test_terraform_steps_run_the_one_root_with_the_environments_files() -> None:
    config = yaml.safe_load(CLOUDBUILD.read_text())
    steps = {s["id"]: s for s in config["steps"]}
    root = REPO / "terraform" / checks.DEPLOYMENT
    for step in ("terraform-plan", "terraform-apply"):
        assert steps[step]["dir"] == f"terraform/{checks.DEPLOYMENT}", step
    plan = steps["terraform-plan"]["args"][-1]
    assert '-backend-config="environments/${_ENV}.gcs.tfbackend"' in plan
    assert '-backend-config="bucket=${_STATE_BUCKET}"' in plan
    assert '-var-file="environments/${_ENV}.tfvars"' in plan
    assert config["substitutions"]["_ENV"] in checks.ENVIRONMENTS
    for env in checks.ENVIRONMENTS:  # every value _ENV may take names files that exist
        assert (root / "environments" / f"{env}.tfvars").is_file(), env
        assert (root / "environments" / f"{env}.gcs.tfbackend").is_file(), env


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  - id: ci-image\n    name: docker\n", "  - name: docker\n", "no id"),
        ('args: ["-c", "make test"]', 'args: ["-c", "make lint"]', "make test"),
        ("${_SMOKE_TIMEOUT}", "${_SMOKE_DEADLINE}", "_SMOKE_DEADLINE is used but not declared"),
        ('--api-key "$$SMOKE_API_KEY"', '--api-key "$SMOKE_API_KEY"', "escape shell variables"),
        ('  _APPLY: "true"\n', '  _APPLY: "true"\n  _UNUSED: "x"\n', "_UNUSED is declared but never used"),
        ('waitFor: ["terraform-plan"]', 'waitFor: ["terraform-plans"]', "not an earlier step"),
        ('secretEnv: ["SMOKE_API_KEY"]', 'secretEnv: ["SMOKE_KEY"]', "not in availableSecrets"),
    ],
)
def test_cloudbuild_check_catches_planted_violations(tmp_path: Path, old: str, new: str, expected: str) -> None:
    copy = tmp_path / "cloudbuild.yaml"
    shutil.copy(CLOUDBUILD, copy)
    replace_in(copy, old, new)
    problems = checks.cloudbuild_violations(copy)
    assert any(expected in p for p in problems), problems
