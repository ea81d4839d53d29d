"""`gpupipe batch upload|status`: a JSON-lines file of job requests, run as one batch.

`batch upload` writes the file to the inbox bucket itself (like `gcloud storage cp`), so it
needs the storage settings of the environment; `batch status` and `--wait` go through the API.
"""

from __future__ import annotations

from client import render
from client.batch_upload import upload_batch_file
from client.context import Context, UsageError
from client.exit_codes import Exit


def upload(ctx: Context) -> int:
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
        uploaded = upload_batch_file(args.file, user_id, settings=settings, blobs=ctx.blobs, name=args.name)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not args.wait:
        ctx.emit(
            {"batch_id": uploaded.batch_id, "uri": uploaded.uri}, f"uploaded {uploaded.uri}\nbatch {uploaded.batch_id}"
        )
        return Exit.OK
    client = ctx.client()
    if not ctx.as_json:
        ctx.stderr.write(f"uploaded {uploaded.uri} as batch {uploaded.batch_id}\n")
    display = ctx.progress()
    try:
        batch = client.wait_batch(uploaded.batch_id, timeout=args.timeout, on_progress=display.batch)
    finally:
        display.close()
    ctx.emit(batch.raw, render.batch_details(batch))
    failed = batch.status == "rejected" or batch.jobs.failed or batch.jobs.cancelled
    return Exit.JOB_FAILED if failed else Exit.OK


def status(ctx: Context) -> int:
    batch = ctx.client().batch(ctx.args.batch_id)
    ctx.emit(batch.raw, render.batch_details(batch))
    return Exit.OK
