"""How the `gpupipe` command shows things to people: tables, job details, progress.

Scripts use `--json` instead; nothing here is parsed back.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from client.resources import Batch, Job, Model, Usage


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(w) for cell, w in zip(cells[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def job_size(job: Job) -> str:
    width, height, images = job.input.get("width"), job.input.get("height"), job.input.get("num_images", 1)
    size = f"{width}x{height}" if width and height else "-"
    return f"{size} x{images}" if images and images != 1 else size


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        [job.id, job.status, percent(job.progress), when(job.created_at), job_size(job), shorten(job.prompt, 48)]
        for job in jobs
    ]
    return table(["ID", "STATUS", "PROGRESS", "CREATED", "SIZE", "PROMPT"], rows)


def job_details(job: Job) -> str:
    status = job.status if job.terminal else f"{job.status} ({percent(job.progress)})"
    pairs: list[tuple[str, str]] = [
        ("id", job.id),
        ("status", status),
        ("prompt", job.prompt),
        ("size", _job_params(job)),
        ("model", " ".join(filter(None, [job.model_name, job.model_version])) or "-"),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("completed", when(job.completed_at)),
    ]
    if job.batch_id:
        pairs.append(("batch", job.batch_id))
    if job.metadata:
        pairs.append(("metadata", ", ".join(f"{k}={v}" for k, v in job.metadata.items())))
    seconds = [
        f"{name} {value:.2f}s"
        for name, value in (
            ("queue", job.metrics.queue_seconds),
            ("run", job.metrics.run_seconds),
            ("gpu", job.metrics.gpu_seconds),
        )
        if value is not None
    ]
    if seconds:
        pairs.append(("timing", ", ".join(seconds)))
    if job.error:
        pairs.append(("error", f"{job.error.code}: {job.error.message}"))
    for output in job.outputs:
        pairs.append((f"output {output.index}", output.url or output.uri))
    return key_values(pairs)


def _job_params(job: Job) -> str:
    parts = [job_size(job)]
    for key, label in (("num_inference_steps", "steps"), ("guidance_scale", "guidance"), ("seed", "seed")):
        if job.input.get(key) is not None:
            parts.append(f"{label} {job.input[key]}")
    return ", ".join(parts)


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def batch_details(batch: Batch) -> str:
    counts = batch.jobs
    pairs = [
        ("id", batch.id),
        ("status", batch.status),
        ("source", batch.source or "-"),
        ("lines", f"{batch.lines} ({batch.invalid_lines} invalid)"),
        (
            "jobs",
            f"{counts.total} total: {counts.succeeded} succeeded, {counts.failed} failed, "
            f"{counts.cancelled} cancelled, {counts.pending} pending",
        ),
        ("created", when(batch.created_at)),
        ("completed", when(batch.completed_at)),
    ]
    if batch.rejection:
        pairs.append(("rejected", batch.rejection))
    if batch.errors_uri:
        pairs.append(("errors", batch.errors_uri))
    if batch.summary_uri:
        pairs.append(("summary", batch.summary_uri))
    return key_values(pairs)


def usage_details(usage: Usage) -> str:
    pairs = [(key.replace("_", " "), _scalar(value)) for key, value in usage.raw.items()]
    return key_values(pairs)


def models_table(models: Sequence[Model]) -> str:
    rows = [[m.name, m.version or "-", "yes" if m.default else ""] for m in models]
    return table(["NAME", "VERSION", "DEFAULT"], rows)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    return str(value)


class ProgressDisplay:
    """Shows a job's or batch's progress on `stream` while the SDK waits.

    On a terminal it redraws one bar in place; elsewhere (a pipe, a CI log) it writes a line
    only when the status changes or progress passes another tenth, so logs stay short."""

    WIDTH = 30

    def __init__(self, stream: TextIO, *, tty: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._tty = tty
        self._clock = clock
        self._started = clock()
        self._drawn = False
        self._last_line: tuple[str, str, int] | None = None

    def job(self, job: Job) -> None:
        self._show(job.id, job.status, job.progress)

    def batch(self, batch: Batch) -> None:
        c = batch.jobs
        self._show(batch.id, f"{batch.status} {c.total - c.pending}/{c.total} jobs", batch.progress)

    def close(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _show(self, name: str, status: str, progress: float) -> None:
        if self._tty:
            filled = round(self.WIDTH * min(max(progress, 0.0), 1.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            elapsed = self._clock() - self._started
            self._stream.write(f"\r\x1b[K{name}  [{bar}] {percent(progress):>4}  {status}  {elapsed:.0f}s")
            self._stream.flush()
            self._drawn = True
            return
        key = (name, status, int(progress * 10))
        if key != self._last_line:
            self._last_line = key
            self._stream.write(f"{name}: {status} {percent(progress)}\n")
            self._stream.flush()
