"""What a worker does to a job's record: claim it, then complete or fail it.

Each step is one `JobLedger.transition`, so the lifecycle guard, the usage record, the quota
release and the batch counters stay in one transaction. A claim pins the model version the
worker runs; a completion records the outputs and GPU seconds. Completing or failing a job that
already ended in that state is a no-op (`Transition.changed` is False).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.jobs import Job, JobError, JobOutput, JobStatus
from core.ledger import JobLedger, Transition


def claim(ledger: JobLedger, job_id: str, *, worker_id: str, model_version: str) -> Job:
    """Move a queued job (or one a crashed worker left running) to running on this worker.
    Raises `InvalidTransition` when the job already ended (cancelled, done)."""

    def pin(job: Job) -> None:
        job.worker_id = worker_id
        job.model_version = model_version
        job.error = None

    return ledger.transition(job_id, JobStatus.RUNNING, pin).job


def complete(
    ledger: JobLedger, job_id: str, *, outputs: Sequence[JobOutput], gpu_seconds: float, model_version: str
) -> Transition:
    """Record the outputs and mark the job succeeded (writes its one usage record)."""

    def record(job: Job) -> None:
        job.outputs = sorted(outputs, key=lambda o: o.index)
        job.gpu_seconds = round(gpu_seconds, 4)
        job.model_version = model_version

    return ledger.transition(job_id, JobStatus.SUCCEEDED, record)


def fail(ledger: JobLedger, job_id: str, *, code: str, message: str, gpu_seconds: float | None = None) -> Transition:
    """Mark the job failed with `{code, message}` (writes its one usage record)."""

    def record(job: Job) -> None:
        job.error = JobError(code, message)
        if gpu_seconds is not None:
            job.gpu_seconds = round(gpu_seconds, 4)

    return ledger.transition(job_id, JobStatus.FAILED, record)
