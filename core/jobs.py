"""The job object and its lifecycle.

`queued -> running -> succeeded | failed`, and `queued | running -> cancelled`; `queued ->
failed` too (a permanent error or a dead letter before any worker ran it). Transitions only go
forward; `running -> running` is allowed as a re-claim by another worker after a crash. The
guard itself runs inside a document-store transaction (`core.ledger.JobLedger`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.timeutil import rfc3339


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

ALLOWED: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED[current]


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


def derived_id(prefix: str, *parts: object) -> str:
    """A deterministic id from its parts, so a replayed event maps to the same document."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:32]}"


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """A stable hash of a request body (for Idempotency-Key comparison)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class JobOutput:
    index: int
    uri: str
    content_type: str
    width: int
    height: int
    seed: int
    bucket: str
    name: str


@dataclass
class Job:
    """A job as stored in the `jobs` collection."""

    id: str
    user_id: str
    status: JobStatus
    input: dict[str, Any]
    model_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    model_version: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    progress: float = 0.0
    outputs: list[JobOutput] = field(default_factory=list)
    error: JobError | None = None
    queue_seconds: float | None = None
    run_seconds: float | None = None
    gpu_seconds: float | None = None
    batch_id: str | None = None
    batch_line: int | None = None
    attempts: int = 0
    worker_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    requeues: int = 0
    """How often a worker requeued this job after its worker went silent (the newest message's
    `requeue` attribute); dead letters of older messages are ignored."""
    quota_day: str | None = None
    """The UTC day whose image quota this job's images were reserved from (set at admission)."""

    @property
    def images(self) -> int:
        return int(self.input.get("num_images", 1))

    @property
    def metadata(self) -> dict[str, Any] | None:
        value = self.input.get("metadata")
        return dict(value) if value is not None else None

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        doc["status"] = self.status.value
        doc["error"] = asdict(self.error) if self.error else None
        return doc

    @classmethod
    def from_document(cls, doc_id: str, doc: Mapping[str, Any]) -> Job:
        data = dict(doc)
        data["status"] = JobStatus(data["status"])
        data["outputs"] = [JobOutput(**o) for o in data.get("outputs") or []]
        data["error"] = JobError(**data["error"]) if data.get("error") else None
        known = {f for f in cls.__dataclass_fields__}
        return cls(id=doc_id, **{k: v for k, v in data.items() if k in known})

    def to_public(self, url_for: Callable[[str, str], str]) -> dict[str, Any]:
        """The job object of the HTTP contract. `url_for(bucket, name)` makes fetchable URLs."""
        return {
            "id": self.id,
            "status": self.status.value,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "started_at": rfc3339(self.started_at),
            "completed_at": rfc3339(self.completed_at),
            "input": dict(self.input),
            "model": {"name": self.model_name, "version": self.model_version},
            "progress": round(self.progress, 4),
            "outputs": [
                {
                    "index": o.index,
                    "uri": o.uri,
                    "url": url_for(o.bucket, o.name),
                    "content_type": o.content_type,
                    "width": o.width,
                    "height": o.height,
                    "seed": o.seed,
                }
                for o in self.outputs
            ],
            "error": {"code": self.error.code, "message": self.error.message} if self.error else None,
            "metrics": {
                "queue_seconds": self.queue_seconds,
                "run_seconds": self.run_seconds,
                "gpu_seconds": self.gpu_seconds,
            },
            "batch_id": self.batch_id,
            "metadata": self.metadata,
        }


def image_seed(job_seed: int, index: int) -> int:
    """The seed of image `index` of a job: `seed + index`, wrapping within 0..2^32-1."""
    return (job_seed + index) % 2**32


def output_object_name(user_id: str, job_id: str, index: int, output_format: str) -> str:
    """Where image `index` of a job lives in the outputs bucket (the upload contract)."""
    if output_format not in CONTENT_TYPES:
        raise ValueError(f"unknown output format {output_format!r}")
    ext = output_format  # `<index>.<output_format>`: png, webp or jpeg
    return f"{user_id}/jobs/{job_id}/{index}.{ext}"


CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
