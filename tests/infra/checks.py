"""Static checkers for the deployment files. Each returns a list of violations (empty when all
is well) for a given directory, so the tests can run it on the repository and on a temporary
copy with a planted violation, and show that it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin"
PRIMITIVE_ROLE = re.compile(r"roles/(owner|editor|viewer)\b")
EXACT_PIN = re.compile(r"^=\s*\d+\.\d+\.\d+$")
# The one root module (relative to terraform/) and the environments it is applied as, each with
# environments/<env>.tfvars (-var-file) and environments/<env>.gcs.tfbackend (-backend-config).
DEPLOYMENT = "deployment"
ENVIRONMENTS = ("staging", "prod")
BUILD_VARIABLES = frozenset({"project_id", "worker_image", "functions_source"})  # -var from the build


def tool(name: str) -> str:
    """A command-line tool from the virtual environment, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (make install provides it)")
    return found


# --------------------------------------------------------------------------- terraform
def terraform_fmt_violations(root: Path) -> list[str]:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-list=true", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode not in (0, 3):
        return [f"terraform fmt failed to run: {result.stderr.strip()}"]
    return [f"not formatted: {line}" for line in result.stdout.splitlines() if line.strip()]


def load_tf(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle)  # type: ignore[no-any-return]


def load_tfvars(path: Path) -> dict[str, Any]:
    """A .tfvars (or .tfbackend) file as {name: value}; python-hcl2 wraps each value in a list."""
    return {
        key: value[0] if isinstance(value, list) and len(value) == 1 else value
        for key, value in load_tf(path).items()
        if not key.startswith("__")
    }


def parse_tf(root: Path) -> dict[Path, dict[str, Any]]:
    return {path: load_tf(path) for path in sorted(root.rglob("*.tf")) if ".terraform" not in path.parts}


def blocks(parsed: dict[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource`/`data` block, or (name, "", body) for variables etc."""
    for entry in parsed.get(kind, []):
        for first, value in entry.items():
            if kind in ("resource", "data"):
                for name, body in value.items():
                    yield first, name, body
            else:
                yield first, "", value


def _one(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    return value[0] if isinstance(value, list) and value else value


def _strings(node: Any, *, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every string (keys too) in a parsed tree, except under the keys in `skip`."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in skip:
                continue
            yield key
            yield from _strings(value, skip=skip)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, skip=skip)


def _dynamic(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    for entry in body.get("dynamic", []):
        if name in entry:
            return entry[name]  # type: ignore[no-any-return]
    return None


def hcl_violations(root: Path) -> list[str]:
    """The invariants every Terraform file under `root` must hold."""
    problems: list[str] = []
    for path, parsed in parse_tf(root).items():
        where = path.relative_to(root)
        for rtype, name, body in blocks(parsed, "resource"):
            ref = f"{where}: {rtype}.{name}"
            if rtype == "google_storage_bucket":
                if _one(body, "uniform_bucket_level_access") is not True:
                    problems.append(f"{ref}: uniform_bucket_level_access must be true")
                if _one(body, "public_access_prevention") != "enforced":
                    problems.append(f'{ref}: public_access_prevention must be "enforced"')
            if rtype == "google_pubsub_subscription":
                problems += _subscription_violations(ref, body)
            if rtype in ("google_pubsub_topic", "google_pubsub_subscription"):
                expected = (
                    "${module.topology.topics}"
                    if rtype == "google_pubsub_topic"
                    else "${module.topology.subscriptions}"
                )
                if _one(body, "for_each") != expected:
                    problems.append(f"{ref}: must be created for_each over {expected} (topology.yaml), nothing else")
            if rtype.endswith(("_iam_binding", "_iam_policy")):
                problems.append(f"{ref}: authoritative IAM resources overwrite grants made elsewhere; use _iam_member")
        # A variable's validation may name primitive roles to forbid them; anything else may not.
        for text in _strings(parsed, skip=frozenset({"validation"})):
            if PRIMITIVE_ROLE.search(text):
                problems.append(f"{where}: primitive role in {text!r}")
        for vname, _, body in blocks(parsed, "variable"):
            if not body.get("type"):
                problems.append(f"{where}: variable {vname} has no type")
            description = _one(body, "description")
            if not isinstance(description, str) or not description.strip():
                problems.append(f"{where}: variable {vname} has no description")
    problems += provider_pin_violations(root)
    problems += environment_violations(root)
    return problems


def _backends(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(type, body) of every `backend` block in the directory's .tf files."""
    found = []
    for path in directory.glob("*.tf"):
        for terraform in load_tf(path).get("terraform", []):
            for backend in terraform.get("backend", []):
                found += list(backend.items())
    return found


def environment_violations(root: Path) -> list[str]:
    """One root module for every environment: a partial GCS backend, no tfvars loaded implicitly,
    and per environment a var file and a backend file whose values keep the environments apart
    (own state prefix, own resource prefix) and keep prod's stateful resources protected."""
    deployment = root / DEPLOYMENT
    if not deployment.is_dir():
        return [f"{DEPLOYMENT}: the root module is missing"]
    problems = []
    dirs = {p.parent for p in root.rglob("*.tf") if ".terraform" not in p.parts}
    roots = sorted(str(d.relative_to(root)) for d in dirs if _backends(d))
    if roots != [DEPLOYMENT]:
        problems.append(f"only {DEPLOYMENT}/ may be a root module (have a backend), found {roots}")
    backends = _backends(deployment)
    if [kind for kind, _ in backends] != ["gcs"]:
        problems.append(f'{DEPLOYMENT}: needs exactly one backend "gcs", found {[k for k, _ in backends]}')
    elif any(not key.startswith("__") for key in backends[0][1]):
        problems.append(f'{DEPLOYMENT}: backend "gcs" must be empty (partial); settings go in environments/*.tfbackend')
    for implicit in [deployment / "terraform.tfvars", *sorted(deployment.glob("*.auto.tfvars"))]:
        if implicit.exists():
            problems.append(f"{implicit.name}: loaded for every environment; use environments/<env>.tfvars")
    environments = deployment / "environments"
    found = {p.name.removesuffix(".tfvars") for p in environments.glob("*.tfvars")}
    backend_files = {p.name.removesuffix(".gcs.tfbackend") for p in environments.glob("*.gcs.tfbackend")}
    if found != set(ENVIRONMENTS) or backend_files != set(ENVIRONMENTS):
        problems.append(
            f"environments/ must hold <env>.tfvars and <env>.gcs.tfbackend for exactly {list(ENVIRONMENTS)}, "
            f"found {sorted(found)} and {sorted(backend_files)}"
        )
    declared = {name for path in deployment.glob("*.tf") for name, _, _ in blocks(load_tf(path), "variable")}
    prefixes: dict[str, Any] = {}
    for env in sorted(found & set(ENVIRONMENTS)):
        values = load_tfvars(environments / f"{env}.tfvars")
        where = f"environments/{env}.tfvars"
        if values.get("environment") != env:
            problems.append(f"{where}: environment must be {env!r}, got {values.get('environment')!r}")
        for name in sorted(values.keys() - declared):
            problems.append(f"{where}: {name} is not a variable of {DEPLOYMENT}/")
        for name in sorted(values.keys() & BUILD_VARIABLES):
            problems.append(f"{where}: {name} is passed by the build (-var), not written in the repository")
        prefix = values.get("prefix")
        if prefix in prefixes.values():
            problems.append(f"{where}: prefix {prefix!r} is also another environment's (resource names collide)")
        prefixes[env] = prefix
        if env == "prod" and values.get("deletion_protection") is not True:
            problems.append(f"{where}: prod must set deletion_protection = true")
        if env in backend_files:
            state = load_tfvars(environments / f"{env}.gcs.tfbackend")
            if state.get("prefix") != f"gpupipe/{env}":
                problems.append(f"environments/{env}.gcs.tfbackend: state prefix must be gpupipe/{env}")
            if "bucket" in state:
                problems.append(f"environments/{env}.gcs.tfbackend: the state bucket is passed at init, not written")
    return problems


def _subscription_violations(ref: str, body: dict[str, Any]) -> list[str]:
    problems = []
    retry = _one(body, "retry_policy")
    if not isinstance(retry, dict) or not retry.get("minimum_backoff") or not retry.get("maximum_backoff"):
        problems.append(f"{ref}: needs a retry_policy with minimum and maximum backoff")
    elif "retry_minimum_backoff_seconds" not in str(retry) or "retry_maximum_backoff_seconds" not in str(retry):
        problems.append(f"{ref}: retry_policy must come from topology.yaml")
    if body.get("dead_letter_policy"):
        return problems
    dynamic = _dynamic(body, "dead_letter_policy")
    # Only the topology's terminal parking subscription (dead_letter_topic: null) goes without;
    # the condition must be exactly that, so no other way of dropping the policy passes.
    condition = str(_one(dynamic, "for_each")) if dynamic else ""
    if not re.fullmatch(
        r"\$\{each\.value\.dead_letter_topic_key == None \? \[\] : \['\$\{each\.value\}'\]\}", condition
    ):
        problems.append(
            f"{ref}: needs a dead_letter_policy (dynamic only on the topology's dead_letter_topic being null)"
        )
    return problems


def provider_pin_violations(root: Path) -> list[str]:
    """Every module and root has versions.tf with required_version and version constraints:
    bounded above in modules, exact (= x.y.z) in the root module (the one with a backend)."""
    problems = []
    dirs = sorted({p.parent for p in root.rglob("*.tf") if ".terraform" not in p.parts})
    for directory in dirs:
        where = directory.relative_to(root)
        versions = directory / "versions.tf"
        if not versions.is_file():
            problems.append(f"{where}: no versions.tf")
            continue
        terraform = _one(load_tf(versions), "terraform") or {}
        if not _one(terraform, "required_version"):
            problems.append(f"{where}: versions.tf has no required_version")
        uses_google = any(
            rtype.startswith("google_")
            for path in directory.glob("*.tf")
            for kind in ("resource", "data")
            for rtype, _, _ in blocks(load_tf(path), kind)
        )
        providers = _one(terraform, "required_providers") or {}
        if uses_google and "google" not in providers:
            problems.append(f"{where}: uses google resources but does not require the google provider")
        is_root = bool(_backends(directory))
        for pname, spec in providers.items():
            spec = spec[0] if isinstance(spec, list) else spec
            constraint = str(spec.get("version", "")).strip()
            if is_root and not EXACT_PIN.match(constraint):
                problems.append(f"{where}: provider {pname} must be pinned exactly (= x.y.z), got {constraint!r}")
            elif not is_root and not ("<" in constraint or "~>" in constraint or EXACT_PIN.match(constraint)):
                problems.append(f"{where}: provider {pname} needs an upper bound, got {constraint!r}")
    return problems


class TerraformError(RuntimeError):
    pass


def evaluate_module(module_dir: Path, variables: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Apply a provider-free module with real Terraform in `workdir` (offline: nothing to
    download) and return its outputs. TerraformError carries Terraform's own message."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = "\n".join(f"  {key} = {json.dumps(value)}" for key, value in variables.items())
    source = json.dumps(str(module_dir))
    (workdir / "main.tf").write_text(
        f'module "m" {{\n  source = {source}\n{args}\n}}\n\noutput "m" {{\n  value = module.m\n}}\n'
    )
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    for command in (["init", "-backend=false", "-input=false", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        done = subprocess.run(
            ["terraform", *command], cwd=workdir, capture_output=True, text=True, timeout=120, env=env, check=False
        )
        if done.returncode != 0:
            raise TerraformError(done.stderr or done.stdout)
    out = subprocess.run(
        ["terraform", "output", "-json", "m"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- checkov
def run_checkov(directory: Path, framework: str) -> dict[str, Any]:
    """checkov's JSON report for one directory, offline (no guideline download)."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    done = subprocess.run(
        [tool("checkov"), "-d", str(directory), "--framework", framework, "-o", "json", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed to run ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if isinstance(report, list):  # one report per framework found
        (report,) = [r for r in report if r.get("check_type") == framework]
    if report.get("results") is None:
        raise RuntimeError(f"checkov found nothing to check in {directory}: {done.stdout[:500]}")
    return report  # type: ignore[no-any-return]


def checkov_violations(report: dict[str, Any]) -> list[str]:
    results = report["results"]
    problems = [
        f"{c['check_id']} failed on {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in results["failed_checks"]
    ]
    problems += [f"parsing error: {p}" for p in results.get("parsing_errors", [])]
    for skipped in results.get("skipped_checks", []):
        reason = (skipped.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < 20 or reason.strip().lower() == "no comment provided":
            problems.append(f"{skipped['check_id']} skipped on {skipped['resource']} without a written reason")
    return problems


# --------------------------------------------------------------------------- kubernetes
def load_manifests(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def kubernetes_schema_violations(directory: Path, kubernetes_version: str = "1.33.0") -> list[str]:
    """kubernetes-validate (offline schemas, strict: no unknown fields) on every built-in kind."""
    problems = []
    for path, doc in load_manifests(directory):
        if "keda.sh" in str(doc.get("apiVersion", "")):
            continue  # CRDs are not in the schemas: keda_violations checks them
        single = directory / f".validate-{path.stem}-{doc['kind']}.yaml"
        single.write_text(yaml.safe_dump(doc))
        try:
            done = subprocess.run(
                [tool("kubernetes-validate"), "--strict", "--quiet", "-k", kubernetes_version, str(single)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            single.unlink()
        if done.returncode != 0:
            problems.append(f"{path.name} {doc['kind']}: {(done.stdout + done.stderr).strip()}")
    return problems


def keda_violations(directory: Path) -> list[str]:
    """The fields KEDA's gcp-pubsub scaler needs, and that its target and auth exist."""
    docs = load_manifests(directory)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    problems = []
    scaled_objects = by_kind.get("ScaledObject", {})
    if not scaled_objects:
        return ["no ScaledObject"]
    for name, so in scaled_objects.items():
        spec = so.get("spec", {})
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            problems.append(f"ScaledObject {name}: apiVersion must be keda.sh/v1alpha1")
        target = spec.get("scaleTargetRef", {})
        deployment = by_kind.get("Deployment", {}).get(target.get("name", ""))
        if target.get("kind", "Deployment") != "Deployment" or deployment is None:
            problems.append(f"ScaledObject {name}: scaleTargetRef must name a Deployment in the manifests")
        elif deployment["metadata"].get("namespace") != so["metadata"].get("namespace"):
            problems.append(f"ScaledObject {name}: must live in its Deployment's namespace")
        if spec.get("minReplicaCount") != 0:
            problems.append(f"ScaledObject {name}: minReplicaCount must be 0 (scale to zero)")
        max_replicas = spec.get("maxReplicaCount")
        if not isinstance(max_replicas, int) or max_replicas < 1:
            problems.append(f"ScaledObject {name}: maxReplicaCount must be a positive integer, got {max_replicas!r}")
        triggers = spec.get("triggers") or []
        pubsub = [t for t in triggers if t.get("type") == "gcp-pubsub"]
        if len(pubsub) != 1:
            problems.append(f"ScaledObject {name}: needs exactly one gcp-pubsub trigger")
            continue
        meta = pubsub[0].get("metadata", {})
        if not meta.get("subscriptionName") and not meta.get("subscriptionNameFromEnv"):
            problems.append(f"ScaledObject {name}: gcp-pubsub trigger needs subscriptionName")
        if meta.get("mode") not in ("SubscriptionSize", "OldestUnackedMessageAge"):
            problems.append(f"ScaledObject {name}: gcp-pubsub mode must be SubscriptionSize or OldestUnackedMessageAge")
        for field in ("value", "activationValue"):
            raw = meta.get(field)
            if not isinstance(raw, str) or not re.fullmatch(r"\d+(\.\d+)?", raw):
                problems.append(f"ScaledObject {name}: gcp-pubsub {field} must be a number as a string, got {raw!r}")
        auth = (pubsub[0].get("authenticationRef") or {}).get("name")
        trigger_auth = by_kind.get("TriggerAuthentication", {}).get(auth or "")
        if trigger_auth is None:
            problems.append(
                f"ScaledObject {name}: authenticationRef must name a TriggerAuthentication in the manifests"
            )
        elif (trigger_auth.get("spec", {}).get("podIdentity") or {}).get("provider") != "gcp":
            problems.append(f"TriggerAuthentication {auth}: needs podIdentity provider gcp (Workload Identity)")
    return problems


# --------------------------------------------------------------------------- cloud build
BUILTIN_SUBSTITUTIONS = frozenset(
    {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "SHORT_SHA",
     "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME", "REPO_FULL_NAME", "SERVICE_ACCOUNT_EMAIL",
     "SERVICE_ACCOUNT", "TRIGGER_BUILD_CONFIG_PATH", "REF_NAME"}
)  # fmt: skip
SUBSTITUTION = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def cloudbuild_violations(path: Path) -> list[str]:
    config = yaml.safe_load(path.read_text())
    problems = []
    steps = config.get("steps") or []
    if not steps:
        return ["no steps"]
    declared = set((config.get("substitutions") or {}).keys())
    secret_env = {
        env for secret in (config.get("availableSecrets") or {}).get("secretManager", []) for env in [secret.get("env")]
    }
    ids = [step.get("id") for step in steps]
    for index, step in enumerate(steps):
        if not step.get("name"):
            problems.append(f"step {index}: no name (builder image)")
        if not step.get("id"):
            problems.append(f"step {index}: no id")
        for needed in step.get("waitFor", []):
            if needed != "-" and needed not in ids[:index]:
                problems.append(f"step {step.get('id')}: waitFor {needed!r} is not an earlier step")
        for env in step.get("secretEnv", []):
            if env not in secret_env:
                problems.append(f"step {step.get('id')}: secretEnv {env} is not in availableSecrets")
    if len(set(ids)) != len(ids):
        problems.append("step ids are not unique")
    used = set()
    for text in _strings(config):
        # $$ escapes a literal $ for the shell; strip those before looking.
        for match in SUBSTITUTION.finditer(text.replace("$$", "")):
            used.add(match.group(1) or match.group(2))
    for name in sorted(used):
        if name.startswith("_") and name not in declared:
            problems.append(f"substitution ${name} is used but not declared")
        elif not name.startswith("_") and name not in BUILTIN_SUBSTITUTIONS:
            problems.append(
                f"${name} is neither a built-in substitution nor declared (escape shell variables as $${name})"
            )
    for name in sorted(declared - used):
        problems.append(f"substitution {name} is declared but never used")
    tests = [s for s in steps if "make test" in " ".join(map(str, s.get("args", [])))]
    if not tests:
        problems.append("no step runs `make test`")
    elif ids.index(tests[0].get("id")) > min(
        (ids.index(s.get("id")) for s in steps if "apply" in " ".join(map(str, s.get("args", [])))), default=len(ids)
    ):
        problems.append("`make test` must run before terraform apply")
    return problems


# --------------------------------------------------------------------------- dockerfile
def hadolint_violations(dockerfile: Path) -> list[str]:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "tty", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return []
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()] or [
        f"hadolint exit {done.returncode}"
    ]
