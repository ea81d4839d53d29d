"""The `gpupipe` command line, built on the SDK (`client.sdk.Client`).

Configuration comes from GPUPIPE_API_URL and GPUPIPE_API_KEY (`--api-url`/`--api-key`
override them); `source .gpupipe/local.env` after `make up` sets both. Every command takes
`--json` for scripts. Exit codes are listed in `EXIT_CODES` and in `gpupipe --help`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from client import render
from client.errors import (
    ApiError,
    Conflict,
    GpupipeError,
    InvalidArgument,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from client.resources import Job
from client.sdk import Client, upload_batch_file

if TYPE_CHECKING:
    from core.ports import BlobStore


class Exit(IntEnum):
    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    RATE_LIMITED = 5
    UNAVAILABLE = 6
    TIMEOUT = 7
    CONFLICT = 8


EXIT_CODES = """\
exit codes:
  0  success
  1  the job (or a job of the batch) failed or was cancelled, or has nothing to download yet
  2  usage error: bad arguments, missing configuration, or a request the API rejected as invalid
  3  not found: no such job or batch (for this API key)
  4  authentication failed: missing, unknown or revoked API key
  5  rate limited or over quota (the message says when to retry)
  6  the API or a backend is unavailable, or cannot be reached
  7  timed out waiting for the job or batch
  8  conflict: the job already finished, or an idempotency key was reused with another request

environment:
  GPUPIPE_API_URL, GPUPIPE_API_KEY   the API and your key (after `make up`: source .gpupipe/local.env)
  GPUPIPE_USER_ID                    default user for `batch upload`
"""

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
SCHEDULERS = ("ddim", "pndm", "euler", "euler_ancestral", "dpm_solver", "lms")

# Optional command groups owned by other packages, mounted when importable:
# each module exposes `register(subparsers)`.
EXTENSIONS = (("client.admin", "admin"), ("gpu_worker.registry_cli", "models"))


class UsageError(Exception):
    """A problem with the command line or the local configuration (exit code 2)."""


@dataclass
class Context:
    """What a command needs: its arguments, configuration, and where to write."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO
    transport: httpx.BaseTransport | None = None
    storage_transport: httpx.BaseTransport | None = None
    blobs: BlobStore | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _client: Client | None = field(default=None, init=False)

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def client(self) -> Client:
        if self._client is None:
            url = getattr(self.args, "api_url", None) or self.environ.get("GPUPIPE_API_URL")
            key = getattr(self.args, "api_key", None) or self.environ.get("GPUPIPE_API_KEY")
            if not url:
                raise UsageError(
                    "no API URL: set GPUPIPE_API_URL or pass --api-url (after `make up`: source .gpupipe/local.env)"
                )
            if not key:
                raise UsageError("no API key: set GPUPIPE_API_KEY or pass --api-key")
            self._client = Client(
                url,
                key,
                transport=self.transport,
                storage_transport=self.storage_transport,
                sleep=self.sleep,
                clock=self.clock,
            )
        return self._client

    def emit(self, data: Any, text: str) -> None:
        """Write `data` as JSON with --json, else the human-readable `text`."""
        if self.as_json:
            self.stdout.write(json.dumps(data, indent=2) + "\n")
        elif text:
            self.stdout.write(text + "\n")

    def progress(self) -> render.ProgressDisplay:
        return render.ProgressDisplay(self.stderr, tty=_isatty(self.stderr), clock=self.clock)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --------------------------------------------------------------------------- commands
def cmd_submit(ctx: Context) -> int:
    args = ctx.args
    request: dict[str, Any] = {"prompt": args.prompt}
    optional = {
        "negative_prompt": args.negative,
        "width": args.width,
        "height": args.height,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "num_images": args.num_images,
        "seed": args.seed,
        "model": args.model,
        "scheduler": args.scheduler,
        "output_format": args.format,
        "webhook": args.webhook,
    }
    request.update({k: v for k, v in optional.items() if v is not None})
    if args.metadata:
        request["metadata"] = dict(args.metadata)
    client = ctx.client()
    job = client.submit(request, idempotency_key=args.idempotency_key)
    if not (args.wait or args.out):
        ctx.emit(job.raw, f"{job.id}  {job.status}")
        return Exit.OK
    if not ctx.as_json:
        ctx.stderr.write(f"submitted {job.id}\n")
    return _wait_and_report(ctx, job.id, out=args.out)


def cmd_status(ctx: Context) -> int:
    job = ctx.client().get(ctx.args.job_id)
    ctx.emit(job.raw, render.job_details(job))
    return Exit.OK


def cmd_wait(ctx: Context) -> int:
    return _wait_and_report(ctx, ctx.args.job_id, out=ctx.args.out)


def cmd_ls(ctx: Context) -> int:
    limit = ctx.args.limit
    jobs: list[Job] = []
    for job in ctx.client().iter_jobs(status=ctx.args.status, page_size=min(limit, 100)):
        jobs.append(job)
        if len(jobs) >= limit:
            break
    ctx.emit({"jobs": [j.raw for j in jobs]}, render.jobs_table(jobs) if jobs else "no jobs")
    return Exit.OK


def cmd_cancel(ctx: Context) -> int:
    job = ctx.client().cancel(ctx.args.job_id)
    ctx.emit(job.raw, f"{job.id}  {job.status}")
    return Exit.OK


def cmd_get(ctx: Context) -> int:
    client = ctx.client()
    job = client.get(ctx.args.job_id)
    if job.status != "succeeded":
        ctx.emit(job.raw, "")
        why = f"failed: {job.error.message}" if job.error else job.status
        if not job.terminal:
            why += f" ({render.percent(job.progress)}); wait for it with `gpupipe wait {job.id}`"
        ctx.stderr.write(f"gpupipe: job {job.id} has no images to download: {why}\n")
        return Exit.JOB_FAILED
    return _download_and_report(ctx, job, ctx.args.out)


def cmd_batch_upload(ctx: Context) -> int:
    args = ctx.args
    user_id = args.user or ctx.environ.get("GPUPIPE_USER_ID")
    if not user_id:
        raise UsageError("batch upload needs the user the file belongs to: pass --user or set GPUPIPE_USER_ID")
    from core.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(ctx.environ)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    try:
        upload = upload_batch_file(args.file, user_id, settings=settings, blobs=ctx.blobs, name=args.name)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not args.wait:
        ctx.emit({"batch_id": upload.batch_id, "uri": upload.uri}, f"uploaded {upload.uri}\nbatch {upload.batch_id}")
        return Exit.OK
    client = ctx.client()
    batch_id = upload.batch_id
    if not ctx.as_json:
        ctx.stderr.write(f"uploaded {upload.uri} as batch {batch_id}\n")
    display = ctx.progress()
    try:
        batch = client.wait_batch(batch_id, timeout=args.timeout, on_progress=display.batch)
    finally:
        display.close()
    ctx.emit(batch.raw, render.batch_details(batch))
    failed = batch.status == "rejected" or batch.jobs.failed or batch.jobs.cancelled
    return Exit.JOB_FAILED if failed else Exit.OK


def cmd_batch_status(ctx: Context) -> int:
    batch = ctx.client().batch(ctx.args.batch_id)
    ctx.emit(batch.raw, render.batch_details(batch))
    return Exit.OK


def cmd_usage(ctx: Context) -> int:
    usage = ctx.client().usage()
    ctx.emit(usage.raw, render.usage_details(usage))
    return Exit.OK


def cmd_models(ctx: Context) -> int:
    models = ctx.client().models()
    ctx.emit(
        {"models": [{"name": m.name, "version": m.version, "default": m.default} for m in models]},
        render.models_table(models) if models else "no models registered",
    )
    return Exit.OK


def _wait_and_report(ctx: Context, job_id: str, *, out: str | None) -> int:
    display = ctx.progress()
    try:
        job = ctx.client().wait(job_id, timeout=ctx.args.timeout, on_progress=display.job)
    finally:
        display.close()
    if job.succeeded and out:
        return _download_and_report(ctx, job, out)
    ctx.emit(job.raw, render.job_details(job))
    if job.succeeded:
        return Exit.OK
    reason = f": {job.error.code}: {job.error.message}" if job.error else ""
    ctx.stderr.write(f"gpupipe: job {job.id} {job.status}{reason}\n")
    return Exit.JOB_FAILED


def _download_and_report(ctx: Context, job: Job, out: str) -> int:
    paths = ctx.client().download(job, out)
    ctx.emit({**job.raw, "files": [str(p) for p in paths]}, "\n".join(str(p) for p in paths))
    return Exit.OK


# --------------------------------------------------------------------------- parser
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

    def command(name: str, handler: Callable[[Context], int], help_text: str, **kw: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=common, **kw)
        sub.set_defaults(handler=handler)
        return sub

    submit = command("submit", cmd_submit, "submit a job")
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
    submit.add_argument("--format", choices=("png", "webp", "jpeg"), help="output format (default png)")
    submit.add_argument("--webhook", metavar="URL", help="https URL called when the job ends")
    submit.add_argument(
        "--metadata", type=_metadata_pair, action="append", metavar="KEY=VALUE", help="your own label (repeatable)"
    )
    submit.add_argument("--idempotency-key", metavar="KEY", help="resubmitting with the same key returns the same job")
    submit.add_argument("--wait", action="store_true", help="wait for the job to finish, showing progress")
    submit.add_argument("--out", metavar="DIR", help="download the images into DIR when done (implies --wait)")
    submit.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds to wait (default 600)")

    status = command("status", cmd_status, "show a job")
    status.add_argument("job_id", metavar="ID")

    wait = command("wait", cmd_wait, "wait for a job to finish, showing progress")
    wait.add_argument("job_id", metavar="ID")
    wait.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds to wait (default 600)")
    wait.add_argument("--out", metavar="DIR", help="download the images into DIR when done")

    ls = command("ls", cmd_ls, "list your jobs, newest first")
    ls.add_argument("--status", choices=JOB_STATUSES)
    ls.add_argument("--limit", type=_positive(int), default=20, help="at most this many jobs (default 20)")

    cancel = command("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("job_id", metavar="ID")

    get = command("get", cmd_get, "download a finished job's images")
    get.add_argument("job_id", metavar="ID")
    get.add_argument("--out", metavar="DIR", default=".", help="directory for the images (default: .)")

    batch = commands.add_parser("batch", help="upload a JSON-lines file of prompts; follow a batch")
    batch_commands = batch.add_subparsers(dest="batch_command", metavar="COMMAND", required=True)
    upload = batch_commands.add_parser(
        "upload",
        parents=common,
        help="upload FILE to the inbox bucket; it becomes a batch",
        description="Upload FILE (one job request per line) to gs://<inbox>/<user>/<name>.jsonl. This talks to "
        "storage directly, like `gcloud storage cp`, so it uses the storage settings of the environment "
        "(.gpupipe/local.env locally).",
    )
    upload.set_defaults(handler=cmd_batch_upload)
    upload.add_argument("file", metavar="FILE")
    upload.add_argument("--user", metavar="USER_ID", help="the user the batch belongs to (default: $GPUPIPE_USER_ID)")
    upload.add_argument("--name", help="object name without .jsonl (default: the file's name)")
    upload.add_argument("--wait", action="store_true", help="wait until every job of the batch finished")
    upload.add_argument("--timeout", type=_positive(float), default=1800.0, help="seconds to wait (default 1800)")
    batch_status = batch_commands.add_parser("status", parents=common, help="show a batch")
    batch_status.set_defaults(handler=cmd_batch_status)
    batch_status.add_argument("batch_id", metavar="ID")

    command("usage", cmd_usage, "show your usage")
    models = command("models", cmd_models, "list the models you can ask for")
    _mount_extensions(commands, models)
    return parser


def _mount_extensions(commands: Any, models: argparse.ArgumentParser) -> None:
    """Add the `admin` and model-registry command groups when their modules are installed.

    Each module's `register(subparsers)` adds its group. `gpupipe models` alone lists models
    through the API, so the registry's group is merged into that command (`_GroupMount`): its
    sub-commands become `gpupipe models <command> ...`. A module that is missing (or whose
    dependencies are: the worker extra, say) is left out."""
    for module_name, group in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        register = getattr(module, "register", None)
        if register is None:
            continue
        if group != "models":
            register(commands)
            continue
        register(_GroupMount(models, group))
        dests = []
        for action in models._actions:  # argparse has no public way to reach a parser's sub-commands
            if isinstance(action, argparse._SubParsersAction):
                action.required = False  # `gpupipe models` alone still lists models
                dests.append(action.dest)
        models.set_defaults(extension_dests=tuple(dests))


class _GroupMount:
    """What an extension's `register(subparsers)` gets for a group the CLI already has.

    An extension may add the group itself (`subparsers.add_parser("models")`): it gets the
    existing parser. Or it may add its sub-commands directly: they go under that parser."""

    def __init__(self, group: argparse.ArgumentParser, name: str) -> None:
        self._group = group
        self._name = name
        self._commands: Any = None

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name == self._name:
            if kwargs.get("help"):
                self._group.description = kwargs["help"]
            return self._group
        return self._subcommands().add_parser(name, **kwargs)  # type: ignore[no-any-return]

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._subcommands(), attribute)

    def _subcommands(self) -> Any:
        if self._commands is None:
            self._commands = self._group.add_subparsers(dest=f"{self._name}_command", metavar="COMMAND")
        return self._commands


def _extension_chosen(args: argparse.Namespace) -> bool:
    """Whether a sub-command of a mounted extension group was given (see `_mount_extensions`)."""
    dests = getattr(args, "extension_dests", ())
    return any(getattr(args, dest, None) for dest in dests if dest != argparse.SUPPRESS) or (
        argparse.SUPPRESS in dests and getattr(args, "func", None) is not None
    )


# --------------------------------------------------------------------------- entry points
def main(argv: Sequence[str] | None = None) -> int:
    """The `gpupipe` console script."""
    return run(argv, os.environ)


def run(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
    storage_transport: httpx.BaseTransport | None = None,
    blobs: BlobStore | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Parse `argv`, run the command and return its exit code. Tests call this with their own
    environment and transports; `main` calls it with the process's."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 for --help
        return int(exc.code) if isinstance(exc.code, int) else Exit.USAGE
    handler = getattr(args, "handler", None)
    if handler is None or _extension_chosen(args):
        # A command of a mounted extension (admin, the model registry): it set `func(args)`.
        func = getattr(args, "func", None)
        if func is None:
            parser.print_usage(err)
            return Exit.USAGE
        return int(func(args) or 0)
    ctx = Context(
        args=args,
        environ=environ,
        stdout=out,
        stderr=err,
        transport=transport,
        storage_transport=storage_transport,
        blobs=blobs,
        sleep=sleep,
        clock=clock,
    )
    try:
        return int(handler(ctx))
    except UsageError as exc:
        err.write(f"gpupipe: error: {exc}\n")
        return Exit.USAGE
    except GpupipeError as exc:
        err.write(f"gpupipe: error: {describe(exc)}\n")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.write("gpupipe: interrupted\n")
        return 130
    finally:
        ctx.close()


def describe(exc: GpupipeError) -> str:
    """One line for a person: the API's message and each bad field."""
    text = str(exc)
    if isinstance(exc, ApiError) and exc.retry_after is not None and isinstance(exc, RateLimited | Unavailable):
        text += f"; retry in {exc.retry_after:.0f}s"
    return " ".join(text.split())


def exit_code_for(exc: GpupipeError) -> int:
    codes: list[tuple[type[GpupipeError], Exit]] = [
        (InvalidArgument, Exit.USAGE),
        (PayloadTooLarge, Exit.USAGE),
        (UnsupportedMediaType, Exit.USAGE),
        (NotFound, Exit.NOT_FOUND),
        (Unauthenticated, Exit.AUTH),
        (RateLimited, Exit.RATE_LIMITED),
        (Unavailable, Exit.UNAVAILABLE),
        (ServerError, Exit.UNAVAILABLE),
        (NetworkError, Exit.UNAVAILABLE),
        (WaitTimeout, Exit.TIMEOUT),
        (Conflict, Exit.CONFLICT),
    ]
    for cls, code in codes:
        if isinstance(exc, cls):
            return code
    return Exit.UNAVAILABLE if isinstance(exc, ApiError) and (exc.status or 0) >= 500 else Exit.JOB_FAILED


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
