"""`gpupipe models`: alone, the models the API serves; with a command (`register`, `promote`,
`rollback`, `list`), the model registry's operator commands from `gpu_worker.registry_cli`.

The registry commands talk to the document store and the models bucket directly, with the
settings of the environment `main` was given, not through the API.
"""

from __future__ import annotations

from client import render
from client.context import Context
from client.exit_codes import Exit
from gpu_worker import registry_cli


def list_models(ctx: Context) -> int:
    models = ctx.client().models()
    ctx.emit(
        {"models": [{"name": m.name, "version": m.version, "default": m.default} for m in models]},
        render.models_table(models) if models else "no models registered",
    )
    return Exit.OK


def run_registry_command(ctx: Context) -> int:
    """A parsed `gpupipe models <command> ...`; registry_cli prints its own output and errors."""
    return int(registry_cli.run(ctx.args, ctx.environ))
