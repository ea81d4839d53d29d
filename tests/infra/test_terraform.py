"""terraform fmt, parsed-HCL invariants, and the topology equality, each with a negative test
showing the check catches a planted violation in a scratch copy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import ENV_VARS, resource_names
from tests.infra import checks
from tests.infra.conftest import TERRAFORM, TOPOLOGY, replace_in

MODULES = ("storage", "pubsub", "firestore", "functions", "worker_cloudrun", "worker_gke", "iam", "monitoring")


def test_terraform_is_formatted(terraform_bin: str) -> None:
    assert checks.terraform_fmt_violations(TERRAFORM) == []


def test_fmt_check_catches_unformatted_file(terraform_bin: str, terraform_copy: Path) -> None:
    replace_in(
        terraform_copy / "modules/iam/service_accounts.tf",
        "  project      = var.project_id",
        "  project=var.project_id",
    )
    assert any("service_accounts.tf" in v for v in checks.terraform_fmt_violations(terraform_copy))


def test_layout_has_a_module_per_unit_and_one_thin_root() -> None:
    for module in MODULES:
        for name in ("versions.tf", "variables.tf", "outputs.tf"):
            assert (TERRAFORM / "modules" / module / name).is_file(), f"{module}/{name}"
        assert not (TERRAFORM / "modules" / module / "main.tf").exists(), f"{module}: name files after what they hold"
    root = TERRAFORM / checks.DEPLOYMENT
    folders = sorted(p.name for p in TERRAFORM.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert folders == [checks.DEPLOYMENT, "modules"], "one root for every environment, no envs/<env> copies"
    for env in checks.ENVIRONMENTS:
        assert (root / "environments" / f"{env}.tfvars").is_file()
        assert (root / "environments" / f"{env}.gcs.tfbackend").is_file()
    parsed = checks.parse_tf(root)
    assert [r for p in root.glob("*.tf") for r in checks.blocks(parsed[p], "resource")] == [], "root only calls stack"
    (calls,) = [m for p in root.glob("*.tf") for m in checks.blocks(parsed[p], "module")]
    assert calls[0] == "gpupipe" and calls[2]["source"] == ["../modules/stack"]


def test_the_root_passes_each_of_its_variables_to_the_stack() -> None:
    """A variable the tfvars set reaches the stack under the same name (dispatch, recovery...)."""
    root = TERRAFORM / checks.DEPLOYMENT
    main = (root / "main.tf").read_text()
    variables = checks.load_tf(root / "variables.tf")
    stack = {n for n, _, _ in checks.blocks(checks.load_tf(TERRAFORM / "modules/stack/variables.tf"), "variable")}
    for name, _, _ in checks.blocks(variables, "variable"):
        assert name in stack, f"{name} is not a variable of modules/stack"
        assert re.search(rf"^\s+{name}\s+= var\.{name}$", main, re.MULTILINE), f"main.tf does not pass {name}"
    assert {"dispatch", "recovery", "api", "gke", "monitoring"} <= {
        n for n, _, _ in checks.blocks(variables, "variable")
    }


def test_environments_are_kept_apart_and_prod_is_protected() -> None:
    tfvars = {
        env: checks.load_tfvars(TERRAFORM / checks.DEPLOYMENT / "environments" / f"{env}.tfvars")
        for env in checks.ENVIRONMENTS
    }
    assert tfvars["prod"]["deletion_protection"] is True
    assert tfvars["prod"]["worker_platform"] == "gke" and tfvars["staging"]["worker_platform"] == "cloudrun"
    assert tfvars["staging"]["prefix"] == "gpupipe-stg"  # the prefix the topology tests below evaluate
    assert checks.environment_violations(TERRAFORM) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("environments/prod.tfvars", "protection = true", "protection = false", "deletion_protection"),
        ("environments/prod.tfvars", 'environment         = "prod"', 'environment = "staging"', "environment must be"),
        ("environments/prod.tfvars", 'prefix              = "gpupipe-prod"', 'prefix = "gpupipe-stg"', "collide"),
        ("environments/prod.tfvars", 'worker_platform     = "gke"', "gpus = 1", "not a variable"),
        ("environments/staging.tfvars", 'region              = "us-central1"', 'project_id = "p"', "by the build"),
        ("environments/prod.gcs.tfbackend", '"gpupipe/prod"', '"gpupipe/staging"', "state prefix"),
        ("backend.tf", 'backend "gcs" {}', 'backend "gcs" {\n    prefix = "gpupipe"\n  }', "partial"),
    ],
)  # fmt: skip
def test_environment_checks_catch_planted_violations(
    terraform_copy: Path, file: str, old: str, new: str, expected: str
) -> None:
    replace_in(terraform_copy / checks.DEPLOYMENT / file, old, new)
    problems = checks.environment_violations(terraform_copy)
    assert any(expected in p for p in problems), problems


def test_an_implicit_tfvars_or_a_second_root_is_caught(terraform_copy: Path) -> None:
    deployment = terraform_copy / checks.DEPLOYMENT
    (deployment / "terraform.tfvars").write_text('environment = "staging"\n')
    (terraform_copy / "envs/prod").mkdir(parents=True)
    (terraform_copy / "envs/prod/backend.tf").write_text('terraform {\n  backend "gcs" {}\n}\n')
    (deployment / "environments/dev.tfvars").write_text('environment = "dev"\n')
    problems = checks.environment_violations(terraform_copy)
    for expected in ("terraform.tfvars: loaded for every environment", "only deployment/ may be a root", "exactly"):
        assert any(expected in p for p in problems), (expected, problems)


def test_hcl_invariants_hold() -> None:
    assert checks.hcl_violations(TERRAFORM) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "modules/storage/buckets.tf",
            'public_access_prevention    = "enforced"',
            'public_access_prevention    = "inherited"',
            "public_access_prevention",
        ),
        (
            "modules/functions/source.tf",
            "uniform_bucket_level_access = true",
            "uniform_bucket_level_access = false",
            "uniform_bucket_level_access",
        ),
        (
            "modules/pubsub/subscriptions.tf",
            "for_each = each.value.dead_letter_topic_key == null ? [] : [each.value]",
            "for_each = []",
            "dead_letter_policy",
        ),
        ("modules/pubsub/subscriptions.tf", "  retry_policy {", "  dummy_policy {", "retry_policy"),
        (
            "modules/stack/service_accounts.tf",
            'project_roles = ["roles/monitoring.viewer"] }',
            'project_roles = ["roles/editor"] }',
            "primitive role",
        ),
        ("modules/iam/variables.tf", "  type        = string\n", "", "has no type"),
        (
            "modules/firestore/variables.tf",
            '  description = "Project that holds the Firestore database."\n',
            "",
            "has no description",
        ),
        ("deployment/versions.tf", 'version = "= 6.50.0"', 'version = ">= 6.50.0"', "pinned exactly"),
        ("modules/monitoring/versions.tf", 'version = ">= 6.47.0, < 7.0.0"', 'version = ">= 6.47.0"', "upper bound"),
        (
            "modules/pubsub/topics.tf",
            "for_each = module.topology.topics",
            'for_each = { extra = { name = "x" } }',
            "topology.yaml",
        ),
        (
            "modules/storage/iam.tf",
            'resource "google_storage_bucket_iam_member" "this"',
            'resource "google_storage_bucket_iam_binding" "this"',
            "authoritative",
        ),
    ],
)
def test_hcl_checks_catch_planted_violations(
    terraform_copy: Path, file: str, old: str, new: str, expected: str
) -> None:
    replace_in(terraform_copy / file, old, new)
    problems = checks.hcl_violations(terraform_copy)
    assert any(expected in p for p in problems), problems


def test_a_topic_declared_outside_the_pubsub_module_is_caught(terraform_copy: Path) -> None:
    (terraform_copy / "modules/stack/stray.tf").write_text(
        'resource "google_pubsub_topic" "stray" {\n  name = "x"\n}\n'
    )
    assert any("stray" in p and "topology.yaml" in p for p in checks.hcl_violations(terraform_copy))


# ----------------------------------------------------------------- topology.yaml == Terraform
def test_terraform_creates_exactly_the_topologys_topics_and_subscriptions(topology_outputs: dict[str, Any]) -> None:
    topology = yaml.safe_load(TOPOLOGY.read_text())
    topics = topology_outputs["topics"]
    subscriptions = topology_outputs["subscriptions"]
    assert set(topics) == set(topology["topics"])
    assert set(subscriptions) == set(topology["subscriptions"])
    assert {t["name"] for t in topics.values()} == {f"gpupipe-stg-{name}" for name in topology["topics"]}
    for name, spec in topology["subscriptions"].items():
        sub = subscriptions[name]
        assert sub["name"] == f"gpupipe-stg-{name}"
        assert sub["topic"] == f"gpupipe-stg-{spec['topic']}"
        for key in (
            "ack_deadline_seconds",
            "message_retention_seconds",
            "retry_minimum_backoff_seconds",
            "retry_maximum_backoff_seconds",
        ):
            assert sub[key] == spec[key], (name, key)
        if spec["dead_letter_topic"] is None:
            assert sub["dead_letter_topic"] is None and sub["max_delivery_attempts"] is None
        else:
            assert sub["dead_letter_topic"] == f"gpupipe-stg-{spec['dead_letter_topic']}"
            assert sub["max_delivery_attempts"] == spec["max_delivery_attempts"]
    assert {b["name"] for b in topology_outputs["buckets"].values()} == {
        f"gpupipe-stg-{b}" for b in topology["buckets"]
    }


def test_every_subscription_dead_letters_except_the_terminal_parking_one(topology_outputs: dict[str, Any]) -> None:
    """The terminal subscription (dead_letter_topic: null) is the end of the dead-letter chain:
    it must read a dead-letter topic (so it only ever holds failures) and be covered by the
    non-empty dead-letter alert (monitoring alerts on every dead_letter_subscriptions entry),
    instead of forwarding its messages somewhere less visible."""
    subscriptions = topology_outputs["subscriptions"]
    parking = topology_outputs["parking_subscriptions"]
    dead_letter_topics = {s["dead_letter_topic_key"] for s in subscriptions.values() if s["dead_letter_topic_key"]}
    assert set(parking) == {"undeliverable-hold"}
    for name, sub in subscriptions.items():
        if name in parking:
            assert sub["topic_key"] in dead_letter_topics
            assert name in topology_outputs["dead_letter_subscriptions"]
        else:
            assert sub["dead_letter_topic_key"] in topology_outputs["topics"]
            assert sub["dead_letter_topic_key"] != sub["topic_key"]


def test_monitoring_alerts_on_every_dead_letter_subscription() -> None:
    alerts = checks.parse_tf(TERRAFORM / "modules/monitoring")[TERRAFORM / "modules/monitoring/alerts.tf"]
    (policy,) = [b for t, n, b in checks.blocks(alerts, "resource") if n == "dead_letters"]
    assert policy["for_each"] == ["${var.dead_letter_subscriptions}"]
    stack = (TERRAFORM / "modules/stack/monitoring.tf").read_text()
    assert "dead_letter_subscriptions = module.pubsub.dead_letter_subscriptions" in stack


def test_resource_names_match_core_settings(topology_outputs: dict[str, Any]) -> None:
    """What Terraform passes to the deployables is exactly what core.settings derives."""
    expected = resource_names("gpupipe-stg")
    env = topology_outputs["settings_env"]
    for var, value in env.items():
        path = ENV_VARS[var]
        assert path.startswith("names."), var
        assert expected[path.removeprefix("names.")] == value, var
    assert {ENV_VARS[v].removeprefix("names.") for v in env} == set(expected)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("dead_letter_topic: jobs-dead", "dead_letter_topic: nowhere"), "must be a declared topic"),
        (("    dead_letter_topic: undeliverable\n    max_delivery_attempts: 10\n    delivered_to: on_upload",
          "    dead_letter_topic: null\n    delivered_to: on_upload"), "terminal parking subscription"),
        (("max_delivery_attempts: 5", "max_delivery_attempts: 500"), "between 5 and 100"),
    ],
)  # fmt: skip
def test_terraform_refuses_a_broken_topology(
    terraform_bin: str, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    broken = tmp_path / "topology.yaml"
    text = TOPOLOGY.read_text()
    assert edit[0] in text
    broken.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(checks.TerraformError, match=message):
        checks.evaluate_module(
            TERRAFORM / "modules/topology", {"topology_file": str(broken), "prefix": "gpupipe-stg"}, tmp_path / "tf"
        )


def test_the_root_reads_the_repositorys_topology_file() -> None:
    main = (TERRAFORM / checks.DEPLOYMENT / "main.tf").read_text()
    assert 'topology_file       = "${path.root}/../../topology.yaml"' in main
    assert (TERRAFORM / checks.DEPLOYMENT / "../../topology.yaml").resolve() == TOPOLOGY


def test_deployables_get_only_variables_core_settings_reads() -> None:
    """Every environment variable Terraform sets is one core.settings reads."""
    texts = [
        (TERRAFORM / "modules/stack/settings.tf").read_text(),
        (TERRAFORM / "modules/stack/functions.tf").read_text(),
        (TERRAFORM / "modules/stack/workers.tf").read_text(),
        (TERRAFORM / "modules/worker_cloudrun/job.tf").read_text(),
        (TERRAFORM / "modules/functions/functions.tf").read_text(),
    ]
    names = {m for text in texts for m in re.findall(r"\b((?:GPUPIPE|GOOGLE)_[A-Z_]+)\s*=", text)}
    names |= {m for text in texts for m in re.findall(r'(?:key|name)\s*=\s*"((?:GPUPIPE|GOOGLE)_[A-Z_]+)"', text)}
    assert "GPUPIPE_API_KEY_PEPPER" in names and "GPUPIPE_DISPATCH_WORKER_JOB" in names
    # GPUPIPE_ENV selects the defaults in Settings.from_env; every other name is in ENV_VARS.
    assert names - ENV_VARS.keys() - {"GPUPIPE_ENV"} == set()


def test_cloud_run_worker_has_an_l4_and_exits_when_idle() -> None:
    job = checks.parse_tf(TERRAFORM / "modules/worker_cloudrun")[TERRAFORM / "modules/worker_cloudrun/job.tf"]
    (_, _, body) = next(checks.blocks(job, "resource"))
    template = body["template"][0]["template"][0]
    assert template["node_selector"][0]["accelerator"] == ["${var.gpu.accelerator}"]
    assert template["gpu_zonal_redundancy_disabled"] == ["${var.gpu.zonal_redundancy_disabled}"]
    container = template["containers"][0]
    assert container["resources"][0]["limits"][0]["nvidia.com/gpu"] == "1"
    assert "--exit-when-idle" in container["args"][0]
    variables = (TERRAFORM / "modules/worker_cloudrun/variables.tf").read_text()
    assert 'accelerator               = optional(string, "nvidia-l4")' in variables
