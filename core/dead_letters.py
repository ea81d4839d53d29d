"""Dead-lettered job messages: the job could not be processed after the jobs subscription's
maximum delivery attempts, so it is failed with `error.code = "dead_lettered"`.

The failure goes through `JobLedger.transition`, which in one transaction releases the user's
quota, writes the job's one usage record and counts the job in its batch; a batch finished by
this writes its `summary.json`. A duplicate dead letter, or one for a job that meanwhile ended,
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters.ports import BlobStore, DocumentStore
from core.batches import write_summary
from core.errors import InvalidTransition, NotFoundError
from core.jobs import Job, JobError, JobStatus
from core.ledger import JobLedger
from core.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTERED = "dead_lettered"


class NotAJobMessage(ValueError):
    """The dead-lettered message names no job; retrying cannot help."""


@dataclass(frozen=True)
class DeadLetterOutcome:
    job_id: str
    failed: bool
    """True when this call failed the job; False for an unknown, already-ended or duplicate job."""


def requeue_of(attributes: Mapping[str, str]) -> int:
    """Which message of a job this is: 0 for the original, n for the n-th requeue."""
    try:
        return max(0, int(attributes.get("requeue", "0")))
    except ValueError:
        return 0


def job_id_of(attributes: Mapping[str, str], data: bytes) -> str:
    """The job a job message is about: the `job_id` attribute, else the data (the job id)."""
    job_id = attributes.get("job_id") or data.decode("utf-8", errors="replace").strip()
    if not job_id or "/" in job_id or len(job_id) > 200:
        raise NotAJobMessage("the message names no job (no job_id attribute, no job id as data)")
    return job_id


class DeadLetterHandler:
    def __init__(
        self,
        documents: DocumentStore,
        blobs: BlobStore,
        settings: Settings,
        *,
        on_terminal: Callable[[Job], None] | None = None,
    ) -> None:
        self._documents = documents
        self._blobs = blobs
        self._settings = settings
        self._ledger = JobLedger(documents, on_terminal=on_terminal)

    def handle(self, job_id: str, *, delivery_attempts: int | None = None, requeue: int = 0) -> DeadLetterOutcome:
        """`requeue` is the message's `requeue` attribute (0 for the original message)."""
        attempts = (
            f"after {delivery_attempts} delivery attempts" if delivery_attempts else "after every delivery attempt"
        )
        message = f"no worker could process the job {attempts}; it was given up"

        def record(job: Job) -> None:
            job.error = JobError(DEAD_LETTERED, message)

        current = self._ledger.get(job_id)
        if current is not None and requeue < current.requeues:
            # A worker requeued the job after its first worker died: this dead letter is a message
            # the newer one superseded (it went astray with the dead worker); it changes nothing.
            log.info("dead letter of a superseded message; ignored", extra={"job_id": job_id})
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
