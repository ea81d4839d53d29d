"""Typed views of the API's JSON objects (the HTTP contract in the README, "The HTTP API (v1)").

Each class is built with `from_dict` from the decoded JSON and keeps that dict as `raw`, so a
field the contract adds later is still reachable and `--json` output stays exactly what the API
sent. Unknown fields are ignored, never an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_BATCH_STATUSES = frozenset({"completed", "rejected"})


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp from the API (`...Z`) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    return dt.datetime.fromisoformat(value)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Output:
    """One image of a job: `uri` is where it lives (gs://...), `url` where to fetch it."""

    index: int
    uri: str
    url: str
    content_type: str
    width: int
    height: int
    seed: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Output:
        return cls(
            index=int(data["index"]),
            uri=str(data.get("uri", "")),
            url=str(data.get("url", "")),
            content_type=str(data.get("content_type", "")),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            seed=int(data.get("seed", 0)),
        )

    @property
    def extension(self) -> str:
        """The file extension for this image: from the content type, else from the object name."""
        by_type = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg"}
        if self.content_type in by_type:
            return by_type[self.content_type]
        tail = self.uri.rsplit("/", 1)[-1]
        return tail.rsplit(".", 1)[-1] if "." in tail else "bin"


@dataclass(frozen=True)
class JobFailure:
    code: str
    message: str


@dataclass(frozen=True)
class Metrics:
    queue_seconds: float | None = None
    run_seconds: float | None = None
    gpu_seconds: float | None = None


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    progress: float
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    input: dict[str, Any]
    model_name: str | None
    model_version: str | None
    outputs: list[Output]
    error: JobFailure | None
    metrics: Metrics
    batch_id: str | None
    metadata: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        model = data.get("model") or {}
        error = data.get("error")
        metrics = data.get("metrics") or {}
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            progress=float(data.get("progress") or 0.0),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            started_at=parse_time(data.get("started_at")),
            completed_at=parse_time(data.get("completed_at")),
            input=dict(data.get("input") or {}),
            model_name=model.get("name"),
            model_version=model.get("version"),
            outputs=[Output.from_dict(o) for o in data.get("outputs") or []],
            error=JobFailure(str(error.get("code", "")), str(error.get("message", ""))) if error else None,
            metrics=Metrics(
                queue_seconds=_float(metrics.get("queue_seconds")),
                run_seconds=_float(metrics.get("run_seconds")),
                gpu_seconds=_float(metrics.get("gpu_seconds")),
            ),
            batch_id=data.get("batch_id"),
            metadata=dict(data["metadata"]) if data.get("metadata") is not None else None,
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt", ""))


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_page_token: str | None


@dataclass(frozen=True)
class BatchJobCounts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    pending: int = 0


@dataclass(frozen=True)
class Batch:
    """One uploaded JSON-lines file and the jobs it became."""

    id: str
    status: str
    source: str | None
    lines: int
    invalid_lines: int
    jobs: BatchJobCounts
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    completed_at: dt.datetime | None
    errors_uri: str | None
    summary_uri: str | None
    rejection: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        jobs = data.get("jobs") or {}
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            source=data.get("source"),
            lines=int(data.get("lines") or 0),
            invalid_lines=int(data.get("invalid_lines") or 0),
            jobs=BatchJobCounts(**{k: int(jobs.get(k) or 0) for k in BatchJobCounts.__dataclass_fields__}),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            completed_at=parse_time(data.get("completed_at")),
            errors_uri=data.get("errors_uri"),
            summary_uri=data.get("summary_uri"),
            rejection=data.get("rejection"),
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_BATCH_STATUSES

    @property
    def progress(self) -> float:
        """Share of the batch's jobs that are terminal (1.0 for a finished or empty batch)."""
        if self.jobs.total == 0:
            return 1.0 if self.terminal else 0.0
        return (self.jobs.total - self.jobs.pending) / self.jobs.total


@dataclass(frozen=True)
class Usage:
    """The caller's usage. `raw` holds every figure the API reports, these three included."""

    jobs: int
    images: int
    gpu_seconds: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(
            jobs=int(data.get("jobs") or 0),
            images=int(data.get("images") or 0),
            gpu_seconds=float(data.get("gpu_seconds") or 0.0),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Model:
    name: str
    version: str | None
    default: bool

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Model:
        return cls(name=str(data["name"]), version=data.get("version"), default=bool(data.get("default")))
