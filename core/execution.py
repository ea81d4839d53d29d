"""What a worker does to a job's record: claim it, then complete, fail or release it.

Each step is one `JobLedger.transition`, so the lifecycle guard, the usage record, the quota
release and the batch counters stay in one transaction. Completing or failing a job that already
ended in that state is a no-op (`Transition.changed` is False).

Exclusive execution: a claim names the worker and carries a fencing token, the job's `attempts`
after the claim. A job that a live worker holds cannot be claimed by another (`ClaimHeld`: a
duplicate delivery); it can once its holder stopped heartbeating for `stale_after` or released
it. Completing or failing checks the token in the same transaction, so a worker whose claim was
taken over gets `ClaimLost` and must drop its result: no outputs recorded, no usage written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import ClaimHeld, ClaimLost
from core.jobs import Job, JobError, JobOutput, JobStatus
from core.ledger import JobLedger, Transition


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running job."""

    worker_id: str
    token: int

    def check(self, job: Job) -> None:
        if job.worker_id != self.worker_id or job.attempts != self.token:
            holder = job.worker_id or "nobody"
            raise ClaimLost(
                f"job {job.id} is now held by {holder} (attempt {job.attempts}); "
                f"attempt {self.token} of {self.worker_id} lost it"
            )


def claim(
    ledger: JobLedger, job_id: str, *, worker_id: str, model_version: str, stale_before: dt.datetime
) -> tuple[Job, Claim]:
    """Move a queued job (or a running one whose worker went silent or gave it back) to running
    on this worker. Raises `ClaimHeld` when another live worker holds it and `InvalidTransition`
    when the job already ended (cancelled, done)."""

    def pin(job: Job) -> None:
        held_by_other = job.worker_id is not None and job.worker_id != worker_id
        if job.status is JobStatus.RUNNING and held_by_other and job.updated_at >= stale_before:
            raise ClaimHeld(f"job {job_id} is running on {job.worker_id}")
        job.worker_id = worker_id
        job.model_version = model_version
        job.error = None

    claimed = ledger.transition(job_id, JobStatus.RUNNING, pin).job
    return claimed, Claim(worker_id, claimed.attempts)


def complete(
    ledger: JobLedger,
    job_id: str,
    *,
    outputs: Sequence[JobOutput],
    gpu_seconds: float,
    model_version: str,
    claim: Claim | None = None,
) -> Transition:
    """Record the outputs and mark the job succeeded (writes its one usage record). With a
    `claim`, only while that claim still holds (`ClaimLost` otherwise)."""

    def record(job: Job) -> None:
        if claim is not None:
            claim.check(job)
        job.outputs = sorted(outputs, key=lambda o: o.index)
        job.gpu_seconds = round(gpu_seconds, 4)
        job.model_version = model_version

    return ledger.transition(job_id, JobStatus.SUCCEEDED, record)


def fail(
    ledger: JobLedger,
    job_id: str,
    *,
    code: str,
    message: str,
    gpu_seconds: float | None = None,
    claim: Claim | None = None,
) -> Transition:
    """Mark the job failed with `{code, message}` (writes its one usage record). With a
    `claim`, only while that claim still holds (`ClaimLost` otherwise)."""

    def record(job: Job) -> None:
        if claim is not None and job.status is JobStatus.RUNNING:
            claim.check(job)
        job.error = JobError(code, message)
        if gpu_seconds is not None:
            job.gpu_seconds = round(gpu_seconds, 4)

    return ledger.transition(job_id, JobStatus.FAILED, record)
