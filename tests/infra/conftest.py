"""Shared fixtures of the infra checks: checkov runs once per session (it is slow), the
topology module is evaluated by real Terraform once per prefix."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.infra import checks

REPO = checks.REPO
TERRAFORM = REPO / "terraform"
K8S = REPO / "k8s"
TOPOLOGY = REPO / "topology.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.infra)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail("terraform is not on PATH; install Terraform 1.11 (docs/deploy.md)")
    return found


@pytest.fixture(scope="session")
def checkov_terraform() -> dict[str, Any]:
    return checks.run_checkov(TERRAFORM, "terraform")


@pytest.fixture(scope="session")
def checkov_kubernetes() -> dict[str, Any]:
    return checks.run_checkov(K8S, "kubernetes")


@pytest.fixture(scope="session")
def topology_outputs(terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The topology module's outputs for prefix gpupipe-stg, computed by Terraform itself."""
    return checks.evaluate_module(
        TERRAFORM / "modules" / "topology",
        {"topology_file": str(TOPOLOGY), "prefix": "gpupipe-stg"},
        tmp_path_factory.mktemp("topology"),
    )


@pytest.fixture
def terraform_copy(tmp_path: Path) -> Path:
    """A scratch copy of terraform/ to plant violations in."""
    target = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, target, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return target


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
