"""What an API user can do with jobs: submit, read, list, cancel, and see their usage.

Every read is scoped to the calling user: another user's job or batch is reported as not
found, exactly like an id that does not exist, so nothing can be inferred about it.

Submitting a job:
1. validate the body (`core.job_request`), rejecting unknown fields and naming bad ones;
2. with an `Idempotency-Key`, the job id is derived from (user, key), so at most one job can
   ever exist per key: a replay with the same body returns that job, another body is a
   `Conflict`. A create-only claim document makes concurrent submits with one key wait for
   the first instead of all contending in the admission transaction;
3. count the request in the user's per-minute window (a document shared by every instance);
4. admit: check and reserve the concurrency and daily-image limits and create the job, in one
   transaction (`JobLedger.admit`);
5. publish the job message (the publisher adapter retries transient errors, bounded by
   `publish_timeout`). If it still fails, the job is failed through the ledger with
   `error.code = "unavailable"` (releasing its quota, recording zero images) and the caller
   gets `Unavailable` (503). A retry with the same `Idempotency-Key` then returns that failed
   job, so clients should submit again with a new key. If the process dies between admission
   and publish, the job stays queued with no message: the reconciler (`core.reconciler`)
   publishes it once it has waited `queued_after_seconds`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from core import collection_names as c
from core.batches import Batch, write_summary
from core.claims import create_claim
from core.errors import (
    Conflict,
    FieldError,
    InvalidArgument,
    InvalidTransition,
    NotFoundError,
    Unavailable,
)
from core.job_messages import publish_job
from core.job_request import validate_request
from core.jobs import Job, JobError, JobStatus, derived_id, new_job_id, request_fingerprint
from core.keyed_locks import KeyedLocks
from core.ledger import JobLedger
from core.page_tokens import decode_token, encode_token
from core.polling import poll
from core.ports import (
    AdapterError,
    AlreadyExists,
    BackendUnavailable,
    BlobStore,
    DocumentStore,
    Filter,
    Order,
    Publisher,
    Transaction,
    TransactionAborted,
)
from core.rate_limits import count_request
from core.settings import Settings
from core.timeutil import utcnow
from core.usage import usage_summary
from core.users import User

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
PUBLISH_UNAVAILABLE = "unavailable"
CLAIM_TTL = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    """False when an `Idempotency-Key` replay returned an existing job."""


@dataclasses.dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_page_token: str | None


class JobService:
    def __init__(
        self,
        documents: DocumentStore,
        publisher: Publisher,
        settings: Settings,
        *,
        blobs: BlobStore,
        clock: Callable[[], dt.datetime] = utcnow,
        publish_timeout: float = 10.0,
        claim_wait_seconds: float = 15.0,
        admission_wait_seconds: float = 20.0,
        on_queued: Callable[[int], None] | None = None,
        on_terminal: Callable[[Job], None] | None = None,
        ledger: JobLedger | None = None,
    ) -> None:
        """`on_queued(n)` is told after `n` new jobs were published (the wiring nudges the
        worker dispatcher with it); it must return at once and never raise. `ledger` is the
        process's one ledger (the composition root passes it; `on_terminal` is then its own)."""
        self._documents = documents
        self._on_queued = on_queued
        self._publisher = publisher
        self._blobs = blobs
        self._settings = settings
        self._ledger = ledger or JobLedger(documents, clock=clock, on_terminal=on_terminal)
        self._clock = clock
        self._publish_timeout = publish_timeout
        self._claim_wait_seconds = claim_wait_seconds
        self._admission_wait_seconds = admission_wait_seconds
        self._user_locks = KeyedLocks()

    # ------------------------------------------------------------------ submit
    def submit(self, user: User, body: Any, *, idempotency_key: str | None = None) -> Submitted:
        request = validate_request(body, self._settings.request_limits)
        fingerprint = request_fingerprint(body)
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
            job_id = derived_id("job", user.id, "idempotency", idempotency_key)
            existing = self._ledger.get(job_id)
            if existing is not None:
                return Submitted(_same_request(existing, fingerprint), created=False)
        else:
            job_id = new_job_id()

        self._check_model(request.get("model"))
        count_request(self._documents, user, self._clock())
        now = self._clock()
        job = Job(
            id=job_id,
            user_id=user.id,
            status=JobStatus.QUEUED,
            input=request,
            model_name=request.get("model") or self._settings.default_model,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
        )
        if idempotency_key is not None and not self._claim(job):
            waited = self._wait_for_claimed_job(job)
            if waited is not None:
                return Submitted(_same_request(waited, fingerprint), created=False)
        try:
            admitted, created = self._admit(user, job)
        except BaseException:
            # No job was created (a quota refusal, a backend failure): release the key at once, so
            # a retry with it is admitted afresh instead of waiting for a claim nobody will fill.
            if idempotency_key is not None and self._ledger.get(job.id) is None:
                self._documents.delete(c.IDEMPOTENCY, job.id)
            raise
        if not created:
            return Submitted(_same_request(admitted, fingerprint), created=False)
        self._publish(admitted)
        log.info("job queued", extra={"job_id": job.id, "user_id": user.id})
        if self._on_queued is not None:
            self._on_queued(1)
        return Submitted(admitted, created=True)

    def _admit(self, user: User, job: Job) -> tuple[Job, bool]:
        # Every admission of one user's job reads and writes that user's quota document, so
        # concurrent admissions of one user contend in the document store (in the Firestore
        # emulator each contended commit waits seconds). Requests of one user in this process
        # take turns instead; only requests on other instances can still contend.
        lock = self._user_locks.lock_for(user.id)
        if not lock.acquire(timeout=self._admission_wait_seconds):
            raise Unavailable("too many concurrent submissions for this account; try again", 2)
        try:
            return self._admit_in_transaction(user, job)
        finally:
            lock.release()

    def _admit_in_transaction(self, user: User, job: Job) -> tuple[Job, bool]:
        def run(tx: Transaction) -> tuple[Job, bool]:
            doc = tx.get(c.JOBS, job.id)
            if doc is not None:
                return Job.from_document(job.id, doc), False
            self._ledger.admit(tx, user, job)
            return job, True

        try:
            return self._documents.transaction(run)
        except (AlreadyExists, TransactionAborted) as exc:
            # Another submit with the same id won the race (or contention gave up): its job is ours.
            existing = self._ledger.get(job.id)
            if existing is not None:
                return existing, False
            if isinstance(exc, TransactionAborted):
                raise Unavailable("too many concurrent changes to this account; try again", 2) from None
            raise

    def _claim(self, job: Job) -> bool:
        """Take the idempotency key; False when another request holds it (it may be ours to wait for)."""
        claim = {
            "user_id": job.user_id,
            "request_hash": job.request_hash,
            "claimed_at": job.created_at,
            # The claim only serialises concurrent first submits; replays later find the job by its
            # derived id, so the claim may be deleted by Firestore's TTL after a day.
            "expires_at": job.created_at + CLAIM_TTL,
        }
        held = create_claim(self._documents, c.IDEMPOTENCY, job.id, claim)
        if held is not None and held and held.get("request_hash") != job.request_hash:
            raise _idempotency_conflict()
        return held is None

    def _wait_for_claimed_job(self, job: Job) -> Job | None:
        """Bounded wait for the request holding the key to create its job. None when the holder
        gave the key up or went silent: then this request admits the job itself, which is safe
        because the job id is fixed by the key and creation is create-only."""
        released = object()

        def created_or_released() -> Job | object | None:
            existing = self._ledger.get(job.id)
            if existing is not None:
                return existing
            return released if self._documents.get(c.IDEMPOTENCY, job.id) is None else None

        found = poll(created_or_released, timeout=self._claim_wait_seconds)
        return found if isinstance(found, Job) else None

    def _check_model(self, name: str | None) -> None:
        """Workers of a deployment serve one model (`GPUPIPE_DEFAULT_MODEL`, the workers'
        `GPUPIPE_WORKER_MODEL`): a job for any other name would be accepted and then never run,
        so it is refused here, naming what is served. Versions of that model are the registry's
        business (promote / roll back)."""
        served = self._settings.default_model
        if name is not None and name != served:
            raise InvalidArgument(
                "invalid job request: model",
                [FieldError("model", f"this deployment serves only {served!r}, got {name!r}")],
            )

    def _publish(self, job: Job) -> None:
        """Publish the job's message. The publisher retries transient errors itself (bounded by
        `publish_timeout`); if it still fails, the job is failed here so it cannot sit queued."""
        try:
            publish_job(self._publisher, self._settings.names.jobs_topic, job, timeout=self._publish_timeout)
            return
        except AdapterError as exc:
            error = exc
            log.warning("publishing the job message failed: %s", exc, extra={"job_id": job.id, "user_id": job.user_id})
        message = (
            "the job could not be queued because the message service is unavailable; "
            "it was not run and not billed: submit it again"
        )

        def record(failed: Job) -> None:
            failed.error = JobError(PUBLISH_UNAVAILABLE, message)

        try:
            self._ledger.transition(job.id, JobStatus.FAILED, record)
        except AdapterError:
            log.exception("could not fail an unpublished job", extra={"job_id": job.id, "user_id": job.user_id})
        raise Unavailable(f"could not queue job {job.id}: {error}", retry_after_seconds=10)

    # ------------------------------------------------------------------ reads
    def get(self, user: User, job_id: str) -> Job:
        job = self._ledger.get(job_id) if _plausible_id(job_id) else None
        if job is None or job.user_id != user.id:
            raise NotFoundError(f"job {job_id} not found")
        return job

    def list(
        self, user: User, *, status: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> JobPage:
        """The user's jobs, newest first. Paging is by cursor: `next_page_token` continues it."""
        where = [Filter("user_id", "==", user.id)]
        if status is not None:
            try:
                where.append(Filter("status", "==", JobStatus(status).value))
            except ValueError:
                allowed = ", ".join(s.value for s in JobStatus)
                raise InvalidArgument(
                    "invalid status filter", [FieldError("status", f"must be one of {allowed}, got {status!r}")]
                ) from None
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidArgument(
                "invalid page size", [FieldError("page_size", f"must be from 1 to {MAX_PAGE_SIZE}, got {size}")]
            )
        cursor = decode_token(page_token, user.id, status) if page_token else None
        page = self._documents.query(
            c.JOBS, where=where, order_by=[Order("created_at", descending=True)], limit=size, start_after=cursor
        )
        jobs = [Job.from_document(d.id, d.data) for d in page.documents]
        token = encode_token(page.cursor, user.id, status) if page.cursor is not None else None
        return JobPage(jobs, token)

    def cancel(self, user: User, job_id: str) -> Job:
        job = self.get(user, job_id)
        if job.status.terminal:
            raise Conflict(f"job {job_id} is already {job.status.value}")
        try:
            result = self._ledger.transition(job_id, JobStatus.CANCELLED)
        except InvalidTransition:
            current = self._ledger.require(job_id)
            raise Conflict(f"job {job_id} is already {current.status.value}") from None
        log.info("job cancelled", extra={"job_id": job_id, "user_id": user.id, "batch_id": job.batch_id})
        if result.completed_batch is not None:
            write_summary(self._blobs, self._documents, self._settings.names.outputs_bucket, result.completed_batch)
        return result.job

    def batch(self, user: User, batch_id: str) -> Batch:
        doc = self._documents.get(c.BATCHES, batch_id) if _plausible_id(batch_id) else None
        if doc is None or doc.get("user_id") != user.id:
            raise NotFoundError(f"batch {batch_id} not found")
        return Batch.from_document(batch_id, doc)

    def usage(self, user: User) -> dict[str, Any]:
        """The caller's totals, today's share and where they stand against their limits now."""
        return usage_summary(self._documents, user, self._clock())


def list_models(documents: DocumentStore) -> list[dict[str, Any]]:
    """The registered models (the worker engineer's registry is the source of truth)."""
    from core.model_registry import list_models as registry_list_models

    return registry_list_models(documents)


# ---------------------------------------------------------------------- helpers
def _same_request(job: Job, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise _idempotency_conflict()
    return job


def _idempotency_conflict() -> Conflict:
    return Conflict("this Idempotency-Key was already used with a different request body")


def _check_idempotency_key(key: str) -> None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable() or not key.isascii():
        raise InvalidArgument(
            "invalid Idempotency-Key",
            [FieldError("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters")],
        )


def _plausible_id(value: str) -> bool:
    # Document ids cannot contain "/" and are bounded; anything else cannot name a stored object.
    return 0 < len(value) <= 200 and "/" not in value and value not in (".", "..") and not value.startswith("__")


__all__ = ["BackendUnavailable", "JobPage", "JobService", "Submitted", "list_models"]
