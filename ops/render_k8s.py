"""Render the Kubernetes manifests in k8s/ for one deployment.

The files in k8s/ are templates with `${NAME}` placeholders; the values come from Terraform
(`terraform output -json k8s_values`). Rendering is strict: a placeholder without a value, a
value no template uses, or a settings key core.settings does not know is an error, so a
renamed variable cannot slip through as a literal `${...}` in the cluster.

    python -m ops.render_k8s --values values.json --out build/k8s
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from core.settings import ENV_VARS

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SETTINGS_KEY = "SETTINGS_CONFIGMAP"
CONFIGMAP_NAME = "gpupipe-worker-settings"
NAMESPACE = "gpupipe"
# Values consumed by the renderer itself rather than by a template.
GENERATED_FROM = frozenset({SETTINGS_KEY, "PEPPER_SECRET"})


class RenderError(ValueError):
    """The templates and the values do not fit together; the message says where."""


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render_text(text: str, values: Mapping[str, str], *, source: str) -> str:
    missing = sorted(placeholders(text) - values.keys())
    if missing:
        raise RenderError(f"{source}: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def settings_configmap(settings_json: str) -> dict[str, object]:
    """The worker's settings as a ConfigMap; every key must be a variable core.settings reads
    (GPUPIPE_ENV, which selects the defaults, or one of ENV_VARS)."""
    try:
        env = json.loads(settings_json)
    except json.JSONDecodeError as exc:
        raise RenderError(f"{SETTINGS_KEY} is not JSON: {exc}") from None
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise RenderError(f"{SETTINGS_KEY} must be a JSON object of strings")
    unknown = sorted(set(env) - ENV_VARS.keys() - {"GPUPIPE_ENV"})
    if unknown:
        raise RenderError(f"{SETTINGS_KEY} has variables core.settings does not read: {', '.join(unknown)}")
    if "GPUPIPE_API_KEY_PEPPER" in env:
        raise RenderError("the pepper must come from the gpupipe-pepper Secret, never the ConfigMap")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "gpupipe"},
        },
        "data": dict(sorted(env.items())),
    }


def render(templates_dir: Path, values: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Render every *.yaml in `templates_dir` into `out_dir`, plus the settings ConfigMap."""
    templates = sorted(templates_dir.glob("*.yaml"))
    if not templates:
        raise RenderError(f"no *.yaml templates in {templates_dir}")
    if SETTINGS_KEY not in values:
        raise RenderError(f"no value for {SETTINGS_KEY}")
    image = values.get("WORKER_IMAGE", "")
    if not DIGEST.search(image):
        raise RenderError(f"WORKER_IMAGE must name an image by digest (...@sha256:<64 hex>), got {image!r}")
    texts = {path.name: path.read_text() for path in templates}
    used = set().union(*(placeholders(text) for text in texts.values()))
    missing = sorted(used - values.keys())
    unused = sorted(values.keys() - used - GENERATED_FROM)
    if missing or unused:
        parts = [f"no value for {', '.join(missing)}"] if missing else []
        parts += [f"values no template uses: {', '.join(unused)}"] if unused else []
        raise RenderError("; ".join(parts))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        rendered = render_text(text, values, source=name)
        list(yaml.safe_load_all(rendered))  # fail here, not in kubectl, on broken YAML
        target = out_dir / name
        target.write_text(rendered)
        written.append(target)
    configmap = out_dir / "settings-configmap.yaml"
    configmap.write_text(yaml.safe_dump(settings_configmap(values[SETTINGS_KEY]), sort_keys=False))
    written.append(configmap)
    return written


def load_values(path: Path) -> dict[str, str]:
    """Accept either the bare map or `terraform output -json k8s_values`'s {"value": ...} form."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "value" in data and "type" in data:
        data = data["value"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise RenderError(f"{path}: expected a JSON object of strings (is worker_platform gke?)")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, required=True, help="JSON file: terraform output -json k8s_values")
    parser.add_argument("--templates", type=Path, default=Path(__file__).resolve().parent.parent / "k8s")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        written = render(args.templates, load_values(args.values), args.out)
    except RenderError as exc:
        print(f"render_k8s: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
