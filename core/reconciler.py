"""The reconciler owns "every accepted job ends": it redelivers jobs whose delivery was lost.

A delivery can be lost in several ways, and none of them may strand a job:
- the `api` or `on_upload` process died between admitting a job and publishing its message;
- a worker died holding the job (its message comes back only after its lease lapses, and the
  Pub/Sub emulator can keep such messages on dead streams for minutes);
- a streaming pull silently stopped delivering.

So the job document, not the message, is the truth. A sweep finds
- `queued` jobs nobody has written for `queued_after_seconds` (doubling after every redelivery,
  up to 8 times: a long backlog is not mistaken for a lost message over and over), and
- `running` jobs whose holder has not heartbeaten for `stale_after` (a live worker heartbeats
  every third of a lease extension),

and redelivers each: a short transaction on that one job takes it over (counts `requeues` up,
releases the holder, resets `updated_at`, so a second reconciler running at the same time finds
nothing to do) and a new message carrying `requeue = n` is published. A running job that
`max_attempts` workers claimed without finishing is failed (`dead_lettered`) instead: it is
more likely to kill workers than to finish.

The sweep reads without a transaction, shuffles what it found and acts per job, so a document
that a crashed process left locked delays only that job, never the recovery of the others.

Where it runs: in every worker (a background thread, `gpu_worker.recovery`), and in GCP also as
the `reconcile` HTTP function that Cloud Scheduler calls every minute (terraform/modules/functions),
because Cloud Run workers scale to zero and then no worker is left to sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from core import collection_names as c
from core import execution
from core.batches import Batch, BatchStatus, write_summary
from core.errors import InvalidTransition, NotFoundError
from core.job_messages import publish_job
from core.jobs import Job, JobStatus
from core.ledger import JobLedger, stale_after
from core.ports import AdapterError, BlobStore, DocumentStore, Filter, Publisher
from core.settings import Settings
from core.timeutil import utcnow

log = logging.getLogger(__name__)

DEAD_LETTERED = "dead_lettered"
_MAX_BACKOFF_FACTOR = 8


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    """Completed batches whose missing summary.json this sweep wrote."""
    errors: list[str] = field(default_factory=list)
    """Jobs (or queries) the sweep could not act on this time; the next sweep tries again."""

    def as_dict(self) -> dict[str, object]:
        counts = (self.requeued, self.failed, self.summaries, self.errors)
        return dict(zip(("requeued", "failed", "summaries", "errors"), map(len, counts), strict=True))


class Reconciler:
    def __init__(
        self,
        documents: DocumentStore,
        blobs: BlobStore,
        publisher: Publisher,
        settings: Settings,
        *,
        ledger: JobLedger | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
        publish_timeout: float = 10.0,
    ) -> None:
        self._documents = documents
        self._blobs = blobs
        self._publisher = publisher
        self._settings = settings
        self._ledger = ledger or JobLedger(documents, clock=clock)
        self._clock = clock
        self._rng = rng or random.Random()
        self._publish_timeout = publish_timeout

    @property
    def stale_after(self) -> dt.timedelta:
        return stale_after(self._settings)

    def sweep(self) -> SweepReport:
        """One pass over queued and running jobs whose delivery looks lost."""
        recovery = self._settings.recovery
        now = self._clock()
        report = SweepReport()
        queued_after = dt.timedelta(seconds=recovery.queued_after_seconds)
        candidates: list[tuple[Job, dt.datetime]] = []
        for status, bound in ((JobStatus.QUEUED, queued_after), (JobStatus.RUNNING, self.stale_after)):
            try:
                found = self._ledger.waiting_since(status, now - bound, limit=recovery.sweep_limit)
            except AdapterError as exc:
                log.warning("could not look for %s jobs to recover: %s", status.value, exc)
                report.errors.append(f"query {status.value}")
                continue
            for job in found:
                before = now - bound * _backoff(job) if status is JobStatus.QUEUED else now - bound
                if job.updated_at < before:
                    candidates.append((job, before))
        self._write_missing_summaries(report)
        self._rng.shuffle(candidates)
        for job, before in candidates:
            try:
                outcome = self.redeliver(job.id, job.status, before)
            except (AdapterError, InvalidTransition, NotFoundError) as exc:
                log.warning("could not recover the job (%s); the next sweep tries again", exc, extra={"job_id": job.id})
                report.errors.append(job.id)
                continue
            if outcome == "requeued":
                report.requeued.append(job.id)
            elif outcome == "failed":
                report.failed.append(job.id)
        if report.requeued or report.failed or report.summaries or report.errors:
            log.info("recovery sweep: %s", report.as_dict())
        return report

    def _write_missing_summaries(self, report: SweepReport) -> None:
        """A batch whose jobs all ended has its `summary.json` written by whoever ended the last
        one; when that write failed and nothing retries it (the job was failed by a sweep, or
        the upload was finalized already), the sweep writes it. Create-only, so never twice."""
        try:
            page = self._documents.query(
                c.BATCHES,
                where=[Filter("status", "==", BatchStatus.COMPLETED.value), Filter("summary_uri", "==", None)],
                limit=self._settings.recovery.sweep_limit,
            )
        except AdapterError as exc:
            log.warning("could not look for batches without a summary: %s", exc)
            report.errors.append("query batches")
            return
        for doc in page.documents:
            batch = Batch.from_document(doc.id, doc.data)
            try:
                write_summary(self._blobs, self._documents, self._settings.names.outputs_bucket, batch)
            except AdapterError as exc:
                log.warning("could not write the batch summary (%s)", exc, extra={"batch_id": batch.id})
                report.errors.append(batch.id)
                continue
            report.summaries.append(batch.id)

    def redeliver(self, job_id: str, status: JobStatus, before: dt.datetime) -> str:
        """Take the job over (if it still is in `status`, unwritten since `before`) and publish it
        again, or fail it when it used up its attempts. Returns `requeued`, `failed` or `skipped`
        (another reconciler or a worker got there first)."""
        taken = self._ledger.take_over(job_id, status, before)
        if taken is None:
            return "skipped"
        context = {"job_id": job_id, "user_id": taken.user_id, "batch_id": taken.batch_id}
        max_attempts = self._settings.recovery.max_attempts
        if taken.status is JobStatus.RUNNING and taken.attempts >= max_attempts:
            message = f"{taken.attempts} workers claimed the job and none finished it; it was given up"
            transition = execution.fail(self._ledger, job_id, code=DEAD_LETTERED, message=message)
            if transition.completed_batch is not None:
                write_summary(
                    self._blobs, self._documents, self._settings.names.outputs_bucket, transition.completed_batch
                )
            log.warning("job given up after %d attempts", taken.attempts, extra=context)
            return "failed"
        publish_job(self._publisher, self._settings.names.jobs_topic, taken, timeout=self._publish_timeout)
        why = "its worker went silent" if status is JobStatus.RUNNING else "it stayed queued"
        log.warning("job redelivered (%s); requeue %d", why, taken.requeues, extra=context)
        return "requeued"


def _backoff(job: Job) -> int:
    return int(min(2**job.requeues, _MAX_BACKOFF_FACTOR))
