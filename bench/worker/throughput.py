"""Worker throughput on this CPU with the tiny model, jobs pulled from the emulators.

For each max batch size B the jobs topic is filled first (a backlog: the worker is saturated),
then one in-process worker drains it. Measured per run:
- images/s = images / (last job completed - first batch started);
- pipeline efficiency = model seconds per image / wall seconds per image, where model seconds
  are the pipeline calls themselves, so 1 - efficiency is what pulling, claiming, encoding,
  uploading and completing cost the GPU thread (target >= 0.9).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.bootstrap import Backends
from core.jobs import Job, JobStatus
from core.ledger import JobLedger
from core.settings import Settings
from emulators import topology
from gpu_worker.consumer import Worker
from gpu_worker.runner import BatchResult, BatchSpec, DiffusersRunner, ImageRequest
from tests.unit.worker.support import create_job, publish


@dataclass
class ThroughputRow:
    batch_size: int
    images: int
    batches: int
    wall_seconds: float
    model_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.wall_seconds

    @property
    def efficiency(self) -> float:
        return self.model_seconds / self.wall_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "images": self.images,
            "batches": self.batches,
            "wall_seconds": round(self.wall_seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
            "model_seconds_per_image": round(self.model_seconds / self.images, 4),
            "wall_seconds_per_image": round(self.wall_seconds / self.images, 4),
            "efficiency": round(self.efficiency, 3),
        }


class RecordingRunner:
    """Wraps the real runner; records when each batch started and how long the model ran."""

    def __init__(self, inner: DiffusersRunner) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.model_version = inner.model_version
        self.batches: list[tuple[dt.datetime, float, int]] = []
        self._lock = threading.Lock()

    def warm_up(self) -> float:
        return self.inner.warm_up()

    def generate(
        self,
        spec: BatchSpec,
        requests: Sequence[ImageRequest],
        *,
        is_cancelled: Callable[[str], bool],
        on_progress: Callable[[float], None],
    ) -> BatchResult:
        started = dt.datetime.now(dt.UTC)
        result = self.inner.generate(spec, requests, is_cancelled=is_cancelled, on_progress=on_progress)
        with self._lock:
            self.batches.append((started, result.model_seconds, sum(r.num_images for r in requests)))
        return result


def measure(
    settings: Settings, backends: Backends, runner: DiffusersRunner, batch_size: int, jobs: int, steps: int = 20
) -> ThroughputRow:
    worker_settings = settings.model_copy(
        update={
            "worker": settings.worker.model_copy(
                update={
                    "max_batch_size": batch_size,
                    "max_outstanding_messages": max(4, 3 * batch_size),
                    "max_batch_wait_seconds": 0.5,
                    "progress_interval_seconds": 1.0,
                }
            )
        }
    )
    # A subscription of its own per run: the Pub/Sub emulator keeps handing a subscription's new
    # messages to a streaming pull that was just cancelled (they come back only after the ack
    # deadline), so the previous run's worker would swallow this run's first messages.
    base = next(
        s
        for s in topology.subscription_specs(topology.load(), settings.names)
        if s.name == settings.names.jobs_subscription
    )
    subscription = dataclasses.replace(base, name=f"{base.name}-bench-{uuid.uuid4().hex[:8]}")
    backends.messaging_admin.ensure_subscription(subscription)
    created: list[Job] = [
        create_job(backends.documents, settings, prompt=f"a lighthouse number {i}", seed=i, num_inference_steps=steps)
        for i in range(jobs)
    ]
    for job in created:
        publish(backends.publisher, settings, job)
    recorder = RecordingRunner(runner)
    worker = Worker(
        worker_settings,
        documents=backends.documents,
        blobs=backends.blobs,
        subscriber=backends.subscriber,
        runner=recorder,
        worker_id=f"bench-b{batch_size}",
        subscription=subscription.name,
    )
    ledger = JobLedger(backends.documents)
    worker.start()
    try:
        deadline = time.monotonic() + 600
        pending = {j.id for j in created}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs still pending after 600 s at batch size {batch_size}")
            time.sleep(0.5)
            pending = {i for i in pending if ledger.require(i).status is not JobStatus.SUCCEEDED}
    finally:
        worker.request_stop("bench done")
        worker.shutdown(grace_seconds=30)
        backends.messaging_admin.delete_subscription(subscription.name)
    finished = [ledger.require(j.id) for j in created]
    last = max(j.completed_at for j in finished if j.completed_at is not None)
    first = min(b[0] for b in recorder.batches)
    return ThroughputRow(
        batch_size=batch_size,
        images=sum(b[2] for b in recorder.batches),
        batches=len(recorder.batches),
        wall_seconds=(last - first).total_seconds(),
        model_seconds=sum(b[1] for b in recorder.batches),
    )
