"""The `gpupipe` command line: every command and group, registered here with plain argparse.

Each command's parser sets `handler`, a function of a `client.context.Context` that returns
the exit code; `client.cli.run` calls it. The `admin` group comes from `client.admin` and the
model registry's commands (under `gpupipe models`) from `gpu_worker.registry_cli`; both also
run alone, so they build their own parsers through a `register(subparsers)` function.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from client import admin, batch_commands, job_commands, model_commands
from client.context import Context
from client.exit_codes import EXIT_CODES
from core.job_request import OUTPUT_FORMATS, SCHEDULERS
from core.jobs import JobStatus
from gpu_worker import registry_cli

Handler = Callable[[Context], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpupipe",
        description="Submit and follow image generation jobs on a gpupipe service.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    common = [_common_options(suppress=True)]
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str,
        handler: Handler,
        help_text: str,
        *,
        description: str | None = None,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=description or help_text, parents=[*common, *parents]
        )
        sub.set_defaults(handler=handler)
        return sub

    submit = command("submit", job_commands.submit, "submit a job")
    submit.add_argument("prompt", help="what to draw")
    submit.add_argument("--negative", metavar="TEXT", help="negative prompt: what to avoid")
    submit.add_argument("--width", type=int, help="pixels, a multiple of 8")
    submit.add_argument("--height", type=int, help="pixels, a multiple of 8")
    submit.add_argument("--steps", type=int, help="denoising steps")
    submit.add_argument("--guidance", type=float, help="guidance scale")
    submit.add_argument("--num-images", type=int, help="images in this job (1-4)")
    submit.add_argument("--seed", type=int, help="seed of the first image (chosen when absent)")
    submit.add_argument("--model", help="model name (the default model when absent)")
    submit.add_argument("--scheduler", choices=SCHEDULERS)
    submit.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default png)")
    submit.add_argument("--webhook", metavar="URL", help="https URL called when the job ends")
    submit.add_argument(
        "--metadata", type=_metadata_pair, action="append", metavar="KEY=VALUE", help="your own label (repeatable)"
    )
    submit.add_argument("--idempotency-key", metavar="KEY", help="resubmitting with the same key returns the same job")
    submit.add_argument("--wait", action="store_true", help="wait for the job to finish, showing progress")
    submit.add_argument("--out", metavar="DIR", help="download the images into DIR when done (implies --wait)")
    submit.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds to wait (default 600)")

    status = command("status", job_commands.status, "show a job")
    status.add_argument("job_id", metavar="ID")

    wait = command("wait", job_commands.wait, "wait for a job to finish, showing progress")
    wait.add_argument("job_id", metavar="ID")
    wait.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds to wait (default 600)")
    wait.add_argument("--out", metavar="DIR", help="download the images into DIR when done")

    ls = command("ls", job_commands.list_jobs, "list your jobs, newest first")
    ls.add_argument("--status", choices=[s.value for s in JobStatus])
    ls.add_argument("--limit", type=_positive(int), default=20, help="at most this many jobs (default 20)")

    cancel = command("cancel", job_commands.cancel, "cancel a queued or running job")
    cancel.add_argument("job_id", metavar="ID")

    get = command("get", job_commands.get, "download a finished job's images")
    get.add_argument("job_id", metavar="ID")
    get.add_argument("--out", metavar="DIR", default=".", help="directory for the images (default: .)")

    batch = commands.add_parser("batch", help="upload a JSON-lines file of prompts; follow a batch")
    batch_group = batch.add_subparsers(dest="batch_command", metavar="COMMAND", required=True)
    upload = batch_group.add_parser(
        "upload",
        parents=common,
        help="upload FILE to the inbox bucket; it becomes a batch",
        description="Upload FILE (one job request per line) to gs://<inbox>/<user>/<name>.jsonl. This talks to "
        "storage directly, like `gcloud storage cp`, so it uses the storage settings of the environment "
        "(.gpupipe/local.env locally).",
    )
    upload.set_defaults(handler=batch_commands.upload)
    upload.add_argument("file", metavar="FILE")
    upload.add_argument("--user", metavar="USER_ID", help="the user the batch belongs to (default: $GPUPIPE_USER_ID)")
    upload.add_argument("--name", help="object name without .jsonl (default: the file's name)")
    upload.add_argument("--wait", action="store_true", help="wait until every job of the batch finished")
    upload.add_argument("--timeout", type=_positive(float), default=1800.0, help="seconds to wait (default 1800)")
    batch_status = batch_group.add_parser("status", parents=common, help="show a batch")
    batch_status.set_defaults(handler=batch_commands.status)
    batch_status.add_argument("batch_id", metavar="ID")

    command("usage", job_commands.usage, "show your usage")
    command(
        "models",
        model_commands.list_models,
        "list the models you can ask for",
        description="list the models you can ask for; with a command, manage the registered versions (operators)",
        parents=[_model_registry_group()],
    )
    admin.register(commands).set_defaults(handler=admin.handle)
    return parser


class _RegistryGroupParser(argparse.ArgumentParser):
    """The class `registry_cli.register` builds its `models` group with, so that the group can
    be a parent of `gpupipe models`: without -h (the child has its own) and with its commands
    optional, since `gpupipe models` alone lists the API's models. Each command's parser sets
    `handler` to run it through the registry."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "add_help": False})

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.update(required=False, parser_class=_RegistryCommandParser)
        return super().add_subparsers(**kwargs)


class _RegistryCommandParser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_defaults(handler=model_commands.run_registry_command)


def _model_registry_group() -> argparse.ArgumentParser:
    holder = argparse.ArgumentParser(prog="gpupipe", add_help=False)
    return registry_cli.register(holder.add_subparsers(parser_class=_RegistryGroupParser))


def _common_options(*, suppress: bool) -> argparse.ArgumentParser:
    """--api-url, --api-key and --json, accepted before or after the command. The copy on each
    command uses SUPPRESS so that leaving it out there keeps the top-level value."""
    default: Any = argparse.SUPPRESS if suppress else None
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--api-url", default=default, help="API base URL (default: $GPUPIPE_API_URL)")
    parent.add_argument("--api-key", default=default, help="API key (default: $GPUPIPE_API_KEY)")
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS if suppress else False, help="print JSON for scripts"
    )
    return parent


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
