"""`gpupipe submit|status|wait|ls|cancel|get|usage`: one job at a time, through the API.

Each handler takes a `Context` and returns an exit code (`client.exit_codes.Exit`); the
arguments are declared in `client.command_parser`.
"""

from __future__ import annotations

from typing import Any

from client import render
from client.context import Context
from client.exit_codes import Exit
from client.resources import Job

# `gpupipe submit` flags and the request fields they set.
_SUBMIT_FIELDS = {
    "negative": "negative_prompt",
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "num_images": "num_images",
    "seed": "seed",
    "model": "model",
    "scheduler": "scheduler",
    "format": "output_format",
    "webhook": "webhook",
}


def submit(ctx: Context) -> int:
    args = ctx.args
    request: dict[str, Any] = {"prompt": args.prompt}
    for flag, name in _SUBMIT_FIELDS.items():
        if (value := getattr(args, flag)) is not None:
            request[name] = value
    if args.metadata:
        request["metadata"] = dict(args.metadata)
    job = ctx.client().submit(request, idempotency_key=args.idempotency_key)
    if not (args.wait or args.out):
        ctx.emit(job.raw, f"{job.id}  {job.status}")
        return Exit.OK
    if not ctx.as_json:
        ctx.stderr.write(f"submitted {job.id}\n")
    return _wait_and_report(ctx, job.id, out=args.out)


def status(ctx: Context) -> int:
    job = ctx.client().get(ctx.args.job_id)
    ctx.emit(job.raw, render.job_details(job))
    return Exit.OK


def wait(ctx: Context) -> int:
    return _wait_and_report(ctx, ctx.args.job_id, out=ctx.args.out)


def list_jobs(ctx: Context) -> int:
    limit = ctx.args.limit
    jobs: list[Job] = []
    for job in ctx.client().iter_jobs(status=ctx.args.status, page_size=min(limit, 100)):
        jobs.append(job)
        if len(jobs) >= limit:
            break
    ctx.emit({"jobs": [j.raw for j in jobs]}, render.jobs_table(jobs) if jobs else "no jobs")
    return Exit.OK


def cancel(ctx: Context) -> int:
    job = ctx.client().cancel(ctx.args.job_id)
    ctx.emit(job.raw, f"{job.id}  {job.status}")
    return Exit.OK


def get(ctx: Context) -> int:
    job = ctx.client().get(ctx.args.job_id)
    if job.status != "succeeded":
        ctx.emit(job.raw, "")
        why = f"failed: {job.error.message}" if job.error else job.status
        if not job.terminal:
            why += f" ({render.percent(job.progress)}); wait for it with `gpupipe wait {job.id}`"
        ctx.stderr.write(f"gpupipe: job {job.id} has no images to download: {why}\n")
        return Exit.JOB_FAILED
    return _download_and_report(ctx, job, ctx.args.out)


def usage(ctx: Context) -> int:
    """What this API key's user has used of their limits."""
    used = ctx.client().usage()
    ctx.emit(used.raw, render.usage_details(used))
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
