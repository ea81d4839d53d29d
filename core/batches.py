"""Batches: one upload of a JSON-lines file to the inbox becomes one batch of jobs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from core.collection_names import BATCHES as BATCHES_COLLECTION
from core.collection_names import JOBS as JOBS_COLLECTION
from core.jobs import Job, derived_id
from core.ports import AlreadyExists, BlobStore, DocumentStore, Filter
from core.timeutil import rfc3339


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    REJECTED = "rejected"


def batch_id_for(bucket: str, object_name: str, generation: int | str) -> str:
    return derived_id("batch", bucket, object_name, generation)


def batch_job_id(batch_id: str, line: int) -> str:
    return derived_id("job", batch_id, line)


def batch_prefix(user_id: str, batch_id: str) -> str:
    """Where a batch's errors.jsonl, rejection and summary.json live in the outputs bucket."""
    return f"{user_id}/batches/{batch_id}"


@dataclass
class Batch:
    id: str
    user_id: str
    source_uri: str
    status: BatchStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    total_lines: int = 0
    jobs_total: int = 0
    invalid_lines: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    completed_at: dt.datetime | None = None
    rejection: str | None = None
    errors_uri: str | None = None
    summary_uri: str | None = None

    @property
    def terminal_jobs(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        doc["status"] = self.status.value
        return doc

    @classmethod
    def from_document(cls, doc_id: str, doc: Mapping[str, Any]) -> Batch:
        data = dict(doc)
        data["status"] = BatchStatus(data["status"])
        known = set(cls.__dataclass_fields__)
        return cls(id=doc_id, **{k: v for k, v in data.items() if k in known})

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "source": self.source_uri,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "completed_at": rfc3339(self.completed_at),
            "lines": self.total_lines,
            "invalid_lines": self.invalid_lines,
            "jobs": {
                "total": self.jobs_total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "cancelled": self.cancelled,
                "pending": self.jobs_total - self.terminal_jobs,
            },
            "errors_uri": self.errors_uri,
            "summary_uri": self.summary_uri,
            "rejection": self.rejection,
        }


def summary_object_name(user_id: str, batch_id: str) -> str:
    return f"{batch_prefix(user_id, batch_id)}/summary.json"


def write_summary(blobs: BlobStore, documents: DocumentStore, outputs_bucket: str, batch: Batch) -> str:
    """Write `summary.json` for a batch whose jobs are all terminal, and record its URI on the
    batch. Create-only, so whoever finishes the batch (a worker, the dead-letter handler, a
    cancel, the upload trigger itself) may call it, and a second call changes nothing.
    Returns the summary's gs:// URI."""
    name = summary_object_name(batch.user_id, batch.id)
    uri = f"gs://{outputs_bucket}/{name}"
    results = []
    for doc in documents.iterate(JOBS_COLLECTION, where=[Filter("batch_id", "==", batch.id)]):
        job = Job.from_document(doc.id, doc.data)
        results.append(
            {
                "line": job.batch_line,
                "job_id": job.id,
                "status": job.status.value,
                "outputs": [o.uri for o in job.outputs],
                "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
            }
        )
    results.sort(key=lambda r: (r["line"] is None, r["line"] or 0))
    summary = {**batch.to_public(), "summary_uri": uri, "results": results}
    try:
        blobs.create(outputs_bucket, name, json.dumps(summary, indent=2).encode(), content_type="application/json")
    except AlreadyExists:
        pass
    documents.update(BATCHES_COLLECTION, batch.id, {"summary_uri": uri})
    return uri
