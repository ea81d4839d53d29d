"""The job ledger: every change of a job's status goes through here.

A transition runs in one document-store transaction that reads the job, checks the lifecycle
rule and writes the job. A transition into a terminal state also, in the same transaction,
writes the job's one usage record, releases the user's concurrency slot (and refunds the daily
images a job that produced none had reserved) and counts the job in its batch. Because the
status guard and the bookkeeping commit together, a duplicate message or a second worker can
neither move a job back nor bill it twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import collection_names as c
from core.batches import Batch, BatchStatus
from core.errors import InvalidTransition, NotFoundError, ResourceExhausted
from core.jobs import Job, JobStatus, can_transition
from core.ports import DocumentStore, Filter, Order, Transaction
from core.settings import Settings
from core.timeutil import day_key, utcnow
from core.users import User

Mutation = Callable[[Job], None]


@dataclass(frozen=True)
class Transition:
    job: Job
    changed: bool
    """False when the job already was in the target terminal state (a duplicate finish)."""
    completed_batch: Batch | None = None
    """The job's batch, when this transition finished its last job."""


def _seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


class JobLedger:
    def __init__(
        self,
        store: DocumentStore,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        on_terminal: Callable[[Job], None] | None = None,
    ) -> None:
        """`on_terminal(job)` runs once per job, after the transition that ended it committed
        (webhooks); it must return at once and never raise."""
        self._store = store
        self._clock = clock
        self._on_terminal = on_terminal

    # ------------------------------------------------------------------ reads
    def get(self, job_id: str) -> Job | None:
        doc = self._store.get(c.JOBS, job_id)
        return Job.from_document(job_id, doc) if doc is not None else None

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found")
        return job

    # ------------------------------------------------------------------ admission
    def admit(
        self,
        tx: Transaction,
        user: User,
        job: Job,
        *,
        extra_writes: Callable[[Transaction], None] | None = None,
        enforce_concurrency: bool = True,
    ) -> None:
        """Inside the caller's transaction, after its own reads: check the user's concurrency
        and daily-image limits, reserve them and create the job. Raises `ResourceExhausted`.
        With `enforce_concurrency=False` (batch jobs from an upload, which the queue paces) the
        job still takes a concurrency slot but is not refused for lack of one."""
        now = self._clock()
        quota = tx.get(c.QUOTAS, user.id) or {}
        active = int(quota.get("active_jobs", 0))
        today = day_key(now)
        day_images = int(quota.get("day_images", 0)) if quota.get("day") == today else 0
        if enforce_concurrency and active >= user.limits.max_concurrent_jobs:
            raise ResourceExhausted(
                f"concurrency limit reached: {active} of {user.limits.max_concurrent_jobs} jobs are queued or running",
                retry_after_seconds=10,
            )
        if day_images + job.images > user.limits.daily_images:
            tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
            raise ResourceExhausted(
                f"daily image quota reached: {day_images} of {user.limits.daily_images} images used today",
                retry_after_seconds=max(1, int((tomorrow - now).total_seconds())),
            )
        if extra_writes is not None:
            extra_writes(tx)
        job.quota_day = today
        tx.set(c.QUOTAS, user.id, {"active_jobs": active + 1, "day": today, "day_images": day_images + job.images})
        tx.create(c.JOBS, job.id, job.to_document())

    # ------------------------------------------------------------------ transitions
    def transition(self, job_id: str, target: JobStatus, mutate: Mutation | None = None) -> Transition:
        """Move a job to `target`, applying `mutate` to it first. Raises `InvalidTransition`
        when the rules forbid it and `NotFoundError` for an unknown job. Moving a job into the
        terminal state it already has is a no-op (`changed=False`), so duplicates are safe."""

        def run(tx: Transaction) -> Transition:
            doc = tx.get(c.JOBS, job_id)
            if doc is None:
                raise NotFoundError(f"job {job_id} not found")
            job = Job.from_document(job_id, doc)
            if job.status == target and target.terminal:
                return Transition(job, changed=False)
            if not can_transition(job.status, target):
                raise InvalidTransition(f"job {job_id} is {job.status.value}; it cannot become {target.value}")
            now = self._clock()
            updated = dataclasses.replace(job, outputs=list(job.outputs), input=dict(job.input))
            if mutate is not None:
                mutate(updated)
            updated.status = target
            updated.updated_at = now
            if target is JobStatus.RUNNING:
                updated.started_at = updated.started_at or now
                updated.attempts = job.attempts + 1
                if updated.queue_seconds is None:
                    updated.queue_seconds = _seconds_between(job.created_at, now)
            if target.terminal:
                updated.completed_at = now
                if updated.started_at is not None and updated.run_seconds is None:
                    updated.run_seconds = _seconds_between(updated.started_at, now)
                if target is JobStatus.SUCCEEDED:
                    updated.progress = 1.0
                self._release_quota(tx, updated, now)
                tx.create(c.USAGE, job_id, usage_record(updated, now))
                if job.batch_id is not None:
                    tx.increment(c.BATCHES, job.batch_id, {_BATCH_COUNTERS[target]: 1})
            tx.set(c.JOBS, job_id, updated.to_document())
            return Transition(updated, changed=True)

        result = self._store.transaction(run)
        if result.changed and target.terminal and self._on_terminal is not None:
            self._on_terminal(result.job)
        # Also for a duplicate finish: if an earlier finisher completed the batch but its summary
        # was never written (it crashed or the write failed), this caller gets to write it.
        if target.terminal and result.job.batch_id is not None:
            due = self.complete_batch_if_done(result.job.batch_id)
            if due is not None:
                return dataclasses.replace(result, completed_batch=due)
        return result

    def complete_batch_if_done(self, batch_id: str) -> Batch | None:
        """Complete the batch when all its jobs are terminal. Returns the batch whenever its
        `summary.json` is due: to the caller that completed it, and to any later caller while the
        summary is still missing (writing it is create-only, so a retry is always safe). None
        while jobs are pending and once the summary exists."""
        doc = self._store.get(c.BATCHES, batch_id)
        if doc is None:
            return None
        seen = Batch.from_document(batch_id, doc)
        if seen.status is BatchStatus.COMPLETED:
            return seen if seen.summary_uri is None else None
        if not _batch_done(seen):
            return None

        def run(tx: Transaction) -> Batch | None:
            current = tx.get(c.BATCHES, batch_id)
            if current is None:
                return None
            batch = Batch.from_document(batch_id, current)
            if batch.status is BatchStatus.COMPLETED:
                return batch if batch.summary_uri is None else None
            if not _batch_done(batch):
                return None
            batch.status = BatchStatus.COMPLETED
            batch.completed_at = batch.updated_at = self._clock()
            tx.set(c.BATCHES, batch_id, batch.to_document())
            return batch

        return self._store.transaction(run)

    def waiting_since(self, status: JobStatus, before: dt.datetime, limit: int = 50) -> list[Job]:
        """Jobs in `status` that nobody has written since `before`, oldest first: queued jobs whose
        message was never published or went astray, running jobs whose worker stopped
        heartbeating. A plain query, no transaction: a wedged document cannot block it."""
        page = self._store.query(
            c.JOBS,
            where=[Filter("status", "==", status.value), Filter("updated_at", "<", before)],
            order_by=[Order("updated_at")],
            limit=limit,
        )
        return [Job.from_document(d.id, d.data) for d in page.documents]

    def take_over(self, job_id: str, status: JobStatus, before: dt.datetime) -> Job | None:
        """Claim the right to redeliver a job that still is in `status` and unwritten since
        `before`: returns it with `requeues` counted up, its holder released and `updated_at`
        reset (so other reconcilers leave it alone), else None. One short transaction on this
        one document; it gives up quickly rather than waiting on a contended document."""

        def run(tx: Transaction) -> Job | None:
            doc = tx.get(c.JOBS, job_id)
            if doc is None:
                return None
            job = Job.from_document(job_id, doc)
            if job.status is not status or job.updated_at >= before:
                return None
            job.requeues += 1
            job.updated_at = self._clock()
            job.worker_id = None
            tx.update(c.JOBS, job_id, {"updated_at": job.updated_at, "requeues": job.requeues, "worker_id": None})
            return job

        return self._store.transaction(run, max_attempts=2)

    def release(self, job_id: str, *, worker_id: str, token: int) -> bool:
        """Give a running job back (a worker nacks it or shuts down): its holder is cleared, so
        the redelivered message can be claimed at once by any worker. Only the current holder
        can release (`token` is the claim's `attempts`). True when it was released."""

        def run(tx: Transaction) -> bool:
            doc = tx.get(c.JOBS, job_id)
            if doc is None:
                return False
            job = Job.from_document(job_id, doc)
            if job.status is not JobStatus.RUNNING or job.worker_id != worker_id or job.attempts != token:
                return False
            tx.update(c.JOBS, job_id, {"worker_id": None, "updated_at": self._clock()})
            return True

        return self._store.transaction(run, max_attempts=2)

    def heartbeat(self, job_id: str) -> None:
        """Mark a running job as still owned by a live worker."""
        self._store.update(c.JOBS, job_id, {"updated_at": self._clock()})

    def record_progress(self, job_id: str, progress: float) -> None:
        """Write progress without a transaction (it is advisory and may be overtaken)."""
        self._store.update(
            c.JOBS, job_id, {"progress": round(min(max(progress, 0.0), 1.0), 4), "updated_at": self._clock()}
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _release_quota(tx: Transaction, job: Job, now: dt.datetime) -> None:
        # Blind increments: finishing jobs never read the user's quota document, so jobs of one
        # user that finish together (a GPU batch) do not contend for it. Images a job did not
        # produce are refunded only on the day they were reserved: that day's counter is the
        # live one exactly when `quota_day` is today.
        deltas: dict[str, int | float] = {"active_jobs": -1}
        unproduced = job.images - len(job.outputs)
        if unproduced > 0 and job.quota_day == day_key(now):
            deltas["day_images"] = -unproduced
        tx.increment(c.QUOTAS, job.user_id, deltas)


def stale_after(settings: Settings) -> dt.timedelta:
    """How long a running job may go without its worker's heartbeat (sent every third of a
    lease extension) before it counts as abandoned: two lease extensions unless set."""
    seconds = settings.recovery.stale_after_seconds or 2 * settings.worker.lease_extension_seconds
    return dt.timedelta(seconds=seconds)


_BATCH_COUNTERS = {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}


def _batch_done(batch: Batch) -> bool:
    return batch.status is BatchStatus.RUNNING and batch.terminal_jobs >= batch.jobs_total


def usage_record(job: Job, now: dt.datetime) -> dict[str, Any]:
    """The one usage (billing) record of a terminal job."""
    return {
        "user_id": job.user_id,
        "job_id": job.id,
        "batch_id": job.batch_id,
        "status": job.status.value,
        "images": len(job.outputs),
        "steps": int(job.input.get("num_inference_steps", 0)),
        "width": int(job.input.get("width", 0)),
        "height": int(job.input.get("height", 0)),
        "model": job.model_name,
        "model_version": job.model_version,
        "gpu_seconds": job.gpu_seconds or 0.0,
        "recorded_at": now,
        "day": day_key(now),
    }
