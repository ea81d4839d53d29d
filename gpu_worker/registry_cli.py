"""`gpupipe models register|promote|rollback|list`: manage model versions.

`register(subparsers)` adds the `models` command to the `gpupipe` CLI; run alone with
`python -m gpu_worker.registry_cli ...`. Settings come from the environment (the local emulator
suite's `.gpupipe/local.env`, or a cloud project). Exit codes: 0 done, 1 an error (one line on
stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from core.errors import GpupipeError
from core.model_registry import ModelRegistry, ModelVersion
from core.ports import AdapterError
from core.settings import Settings, SettingsError


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `models` command (with its sub-commands) to an argparse sub-parsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser("models", help="register, promote, roll back, list models")
    commands = parser.add_subparsers(dest="models_command", required=True)

    reg = commands.add_parser("register", help="upload a diffusers folder as a new model version")
    reg.add_argument("name", help="model name, e.g. tiny-sd")
    reg.add_argument("folder", help="a diffusers pipeline folder (with model_index.json)")
    reg.add_argument("--version", help="version label (default: derived from the content)")
    reg.add_argument("--promote", action="store_true", help="make it the active version")
    reg.set_defaults(models_handler=_register)

    promote = commands.add_parser("promote", help="make a registered version the active one")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.set_defaults(models_handler=_promote)

    rollback = commands.add_parser("rollback", help="make the previously active version active again")
    rollback.add_argument("name")
    rollback.set_defaults(models_handler=_rollback)

    listing = commands.add_parser("list", help="list registered versions")
    listing.add_argument("name", nargs="?", help="only this model")
    listing.set_defaults(models_handler=_list)

    for sub in (reg, promote, rollback, listing):
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None, *, backends: Any = None) -> int:
    """Run a parsed `models` command; returns the exit code. `backends` replaces the ones the
    settings describe (tests)."""
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        if backends is None:
            from adapters.bootstrap import bootstrap

            backends = bootstrap(settings)
        registry = ModelRegistry(backends.documents, backends.blobs, settings.names.models_bucket)
        handler: Callable[[ModelRegistry, argparse.Namespace], list[ModelVersion]] = args.models_handler
        versions = handler(registry, args)
    except (GpupipeError, SettingsError, AdapterError) as exc:
        print(f"gpupipe models: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([_as_json(v) for v in versions], indent=2))
    else:
        for v in versions:
            mark = "*" if v.active else " "
            print(f"{mark} {v.name:<20} {v.version:<24} {v.files:>4} files {v.size_bytes / 1e6:>9.1f} MB  {v.uri}")
    return 0


def _register(registry: ModelRegistry, args: argparse.Namespace) -> list[ModelVersion]:
    return [registry.register(args.name, args.folder, version=args.version, promote=args.promote)]


def _promote(registry: ModelRegistry, args: argparse.Namespace) -> list[ModelVersion]:
    return [registry.promote(args.name, args.version)]


def _rollback(registry: ModelRegistry, args: argparse.Namespace) -> list[ModelVersion]:
    return [registry.rollback(args.name)]


def _list(registry: ModelRegistry, args: argparse.Namespace) -> list[ModelVersion]:
    return registry.versions(args.name)


def _as_json(version: ModelVersion) -> dict[str, Any]:
    data = asdict(version)
    data["registered_at"] = version.registered_at.isoformat() if version.registered_at else None
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.registry_cli", description=__doc__.splitlines()[0])
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
