"""Dead-lettered job messages: the job could not be processed after the jobs subscription's
maximum delivery attempts, so it is failed with `error.code = "dead_lettered"`.

The failure goes through `JobLedger.transition`, which in one transaction releases the user's
quota, writes the job's one usage record and counts the job in its batch; a batch finished by
this writes its `summary.json`. A duplicate dead letter, or one for a job that meanwhile ended,
changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.batches import write_summary
from core.errors import InvalidTransition, NotFoundError
from core.jobs import Job, JobError, JobStatus
from core.ledger import JobLedger, stale_after
from core.ports import BlobStore, DocumentStore
from core.reconciler import Reconciler
from core.settings import Settings
from core.timeutil import utcnow

log = logging.getLogger(__name__)

DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class DeadLetterOutcome:
    job_id: str
    failed: bool
    """True when this call failed the job; False for an unknown, already-ended or duplicate job."""


class DeadLetterHandler:
    def __init__(
        self,
        documents: DocumentStore,
        blobs: BlobStore,
        settings: Settings,
        *,
        reconciler: Reconciler | None = None,
        on_terminal: Callable[[Job], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        ledger: JobLedger | None = None,
    ) -> None:
        """With a `reconciler`, a dead letter of a job that workers did not really try
        `max_attempts` times is redelivered instead of failing the job (see `handle`)."""
        self._documents = documents
        self._blobs = blobs
        self._settings = settings
        self._reconciler = reconciler
        self._clock = clock
        self._ledger = ledger or JobLedger(documents, clock=clock, on_terminal=on_terminal)

    def handle(self, job_id: str, *, delivery_attempts: int | None = None, requeue: int = 0) -> DeadLetterOutcome:
        """`requeue` is the message's `requeue` attribute (0 for the original message).

        A message is dead-lettered after the subscription's maximum delivery attempts, but a
        delivery is not a try: the emulator (and a crash-looping fleet) can deliver a message to
        streams of dead workers that never claimed it. So the job is failed only when workers
        claimed it `max_attempts` times; otherwise it is redelivered, and a job a live worker
        holds is left to that worker."""
        attempts = (
            f"after {delivery_attempts} delivery attempts" if delivery_attempts else "after every delivery attempt"
        )
        message = f"no worker could process the job {attempts}; it was given up"

        def record(job: Job) -> None:
            job.error = JobError(DEAD_LETTERED, message)

        current = self._ledger.get(job_id)
        if current is not None and requeue < current.requeues:
            # The job was redelivered after this message went astray (with a dead worker, on a
            # dead stream): the newer message superseded it, so it changes nothing.
            log.info("dead letter of a superseded message; ignored", extra={"job_id": job_id})
            return DeadLetterOutcome(job_id, failed=False)
        if current is not None and not current.status.terminal and self._redelivered(current):
            return DeadLetterOutcome(job_id, failed=False)

        try:
            result = self._ledger.transition(job_id, JobStatus.FAILED, record)
        except NotFoundError:
            log.warning("dead letter for an unknown job", extra={"job_id": job_id})
            return DeadLetterOutcome(job_id, failed=False)
        except InvalidTransition as exc:
            log.info("dead letter for a job that already ended: %s", exc, extra={"job_id": job_id})
            return DeadLetterOutcome(job_id, failed=False)
        context = {"job_id": job_id, "user_id": result.job.user_id, "batch_id": result.job.batch_id}
        if result.completed_batch is not None:
            # Raises on failure, so the event is redelivered and the summary written then.
            write_summary(self._blobs, self._documents, self._settings.names.outputs_bucket, result.completed_batch)
        if not result.changed:
            log.info("duplicate dead letter", extra=context)
            return DeadLetterOutcome(job_id, failed=False)
        log.warning("job dead-lettered and failed", extra=context)
        return DeadLetterOutcome(job_id, failed=True)

    def _redelivered(self, job: Job) -> bool:
        """True when the job is left to a live holder or was published again."""
        if self._reconciler is None:
            return False
        context = {"job_id": job.id, "user_id": job.user_id, "attempts": job.attempts}
        now = self._clock()
        held = job.status is JobStatus.RUNNING and job.worker_id is not None
        if held and job.updated_at >= now - stale_after(self._settings):
            # Whatever its attempts: the holder finishes it (or, should it die, the reconciler).
            log.info("dead letter of a job a live worker holds; left to it", extra=context)
            return True
        max_attempts = self._settings.recovery.max_attempts
        # Bounded too by redeliveries, so a job no worker ever takes still ends.
        if job.attempts >= max_attempts or job.requeues >= 2 * max_attempts:
            return False
        # `skipped` too means someone else is acting on the job right now.
        outcome = self._reconciler.redeliver(job.id, job.status, before=now + dt.timedelta(seconds=1))
        log.warning("dead letter of a job workers claimed %d times: %s", job.attempts, outcome, extra=context)
        return True
