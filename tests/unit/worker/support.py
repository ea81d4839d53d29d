"""Helpers shared by the worker's unit and integration tests: jobs created the way the API
creates them (through the ledger), their messages, and a fake model runner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core import collection_names as c
from core.batches import Batch, BatchStatus
from core.job_messages import job_message
from core.job_request import validate_request
from core.jobs import Job, JobStatus, new_job_id
from core.ledger import JobLedger
from core.ports import DocumentStore, Publisher, Transaction
from core.settings import Settings
from core.timeutil import utcnow
from core.users import User, UserLimits
from gpu_worker.errors import PermanentError
from gpu_worker.runner import BatchResult, BatchSpec, ImageRequest

# diffusers' Euler-family schedulers call np.array() on a torch tensor, which numpy 2 flags as
# deprecated (torch's __array__ takes no `copy` keyword); harmless, and not ours to fix.
IGNORE_SCHEDULER_NUMPY_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"

USER = User(
    "user-one", "User One", utcnow(), UserLimits(max_concurrent_jobs=100, daily_images=10_000, requests_per_minute=1000)
)


def create_job(
    documents: DocumentStore,
    settings: Settings,
    *,
    batch_id: str | None = None,
    model: str = "tiny-sd",
    **request: Any,
) -> Job:
    """A queued job, admitted through the ledger as the API does (quota reserved)."""
    body = {"prompt": "a lighthouse at dusk", "seed": 42, **request}
    normalized = validate_request(body, settings.request_limits)
    now = utcnow()
    job = Job(
        id=new_job_id(),
        user_id=USER.id,
        status=JobStatus.QUEUED,
        input=normalized,
        model_name=model,
        created_at=now,
        updated_at=now,
        batch_id=batch_id,
    )
    ledger = JobLedger(documents)
    documents.transaction(lambda tx: ledger.admit(tx, USER, job))
    return job


def create_batch(documents: DocumentStore, jobs_total: int) -> str:
    now = utcnow()
    batch = Batch(
        id=f"batch_{new_job_id()[4:]}",
        user_id=USER.id,
        source_uri="gs://inbox/user-one/prompts.jsonl",
        status=BatchStatus.RUNNING,
        created_at=now,
        updated_at=now,
        total_lines=jobs_total,
        jobs_total=jobs_total,
    )
    documents.create(c.BATCHES, batch.id, batch.to_document())
    return batch.id


def publish(publisher: Publisher, settings: Settings, job: Job) -> str:
    return publisher.publish(settings.names.jobs_topic, job.id.encode(), job_message(job))


def usage_records(documents: DocumentStore, job_id: str) -> list[dict[str, Any]]:
    doc = documents.get(c.USAGE, job_id)
    return [doc] if doc is not None else []


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def job_status(documents: DocumentStore, job_id: str) -> JobStatus:
    job = JobLedger(documents).require(job_id)
    return job.status


def cancel(documents: DocumentStore, job_id: str) -> None:
    """Cancel as the API does: a ledger transition."""
    JobLedger(documents).transition(job_id, JobStatus.CANCELLED)


def transaction_noop(_tx: Transaction) -> None:
    return None


@dataclass
class FakeRunner:
    """A model runner that paints solid images, one `step_seconds` sleep per step.

    `fail_with` raises instead; `started` is set when a batch begins; `calls` records every
    batch (its spec and job keys)."""

    model_name: str = "tiny-sd"
    model_version: str = "v-fake"
    step_seconds: float = 0.0
    fail_with: BaseException | None = None
    calls: list[tuple[BatchSpec, list[str]]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    model_seconds_per_image: float = 0.01
    gate: threading.Event | None = None
    """When set, each batch waits (up to 10 s) for it before its first step."""

    def warm_up(self) -> float:
        return 0.0

    def generate(
        self,
        spec: BatchSpec,
        requests: Sequence[ImageRequest],
        *,
        is_cancelled: Callable[[str], bool],
        on_progress: Callable[[float], None],
    ) -> BatchResult:
        self.calls.append((spec, [r.key for r in requests]))
        self.started.set()
        if self.fail_with is not None:
            raise self.fail_with
        if self.gate is not None:
            self.gate.wait(10)
        keys = [r.key for r in requests]
        cancelled = {k for k in keys if is_cancelled(k)}
        steps = 0
        for step in range(spec.steps):
            if len(cancelled) == len(keys):
                break
            time.sleep(self.step_seconds)
            steps = step + 1
            on_progress(steps / spec.steps)
            cancelled.update(k for k in keys if is_cancelled(k))
        result = BatchResult(cancelled=frozenset(cancelled), steps_run=steps)
        if len(cancelled) == len(keys):
            return result
        images = sum(r.num_images for r in requests)
        result.model_seconds = self.model_seconds_per_image * images
        for request in requests:
            if request.key not in cancelled:
                result.images[request.key] = [
                    Image.new("RGB", (spec.width, spec.height), ((request.seed + i) % 256, 0, 0))
                    for i in range(request.num_images)
                ]
        return result


def permanent(message: str = "the model refused") -> PermanentError:
    return PermanentError("model_rejected", message)
