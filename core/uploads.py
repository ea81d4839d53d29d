"""The upload trigger: a JSON-lines file finalized in the inbox bucket becomes a batch of jobs.

Contract (the README's "The upload trigger"):
- `gs://<inbox>/<user_id>/<any path>.jsonl`: every non-empty line is a job request.
- The batch id comes from (bucket, object, generation) and each job id from (batch id, line
  number), so a redelivered or replayed event creates nothing new.
- Invalid lines are listed in `gs://<outputs>/<user_id>/batches/<batch_id>/errors.jsonl` as
  `{"line": n, "error": {"code", "message", "details": [{"field", "message"}]}}`; valid lines run.
- A file that cannot be read at all is rejected whole: `.../batches/<batch_id>/rejected.json`
  holds `{"batch_id", "source", "status": "rejected", "error": {"code", "message"}}` (and, for
  a known user, the batch document says `rejected` too). Reasons: unknown user, not a `.jsonl`
  name, too large (bytes or lines, from settings), not UTF-8, no line that is JSON at all.
- Quota: batch jobs count against the user's daily image quota and occupy concurrency slots,
  but are not refused for lack of a slot (the queue paces a batch; a 100-line file must not
  fail 92 lines against a concurrency limit of 8). Lines past the daily image quota get no
  job: they appear in `errors.jsonl` with `error.code = "resource_exhausted"`.

Exactly-once ingestion: the first delivery takes a create-only claim document and ingests,
renewing the claim every third of `claim_lease_seconds` (settings: `recovery.
upload_claim_lease_seconds`); concurrent duplicates wait (bounded) for it to finish and then do
nothing. Every step is idempotent (create-only job admission, create-only objects), so a
delivery that takes over a claim whose holder died (its renewals stopped for a lease) or failed
resumes the work: lines already admitted keep their jobs, jobs admitted but not published are
published, the rest are admitted, and the batch completes once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import collection_names as c
from core.batches import Batch, BatchStatus, batch_id_for, batch_job_id, batch_prefix, write_summary
from core.claims import Lease, LeaseClaims
from core.errors import ResourceExhausted
from core.job_messages import publish_job
from core.job_request import MAX_SEED
from core.jobs import Job, JobStatus
from core.ledger import JobLedger
from core.ports import (
    AdapterError,
    AlreadyExists,
    BackendUnavailable,
    BlobStore,
    DocumentStore,
    Publisher,
    Transaction,
)
from core.settings import Settings
from core.storage_events import FINALIZE, MalformedNotification, StorageNotification, decode_message_data
from core.timeutil import rfc3339, utcnow
from core.upload_lines import Line, Rejected, parse_lines
from core.users import USER_ID_PATTERN, User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadOutcome:
    kind: str
    """`ignored`, `rejected`, `ingested` or `duplicate`."""
    batch_id: str | None = None
    reason: str | None = None
    jobs: int = 0
    errors: int = 0


class UploadTrigger:
    def __init__(
        self,
        documents: DocumentStore,
        blobs: BlobStore,
        publisher: Publisher,
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        claim_lease_seconds: float | None = None,
        duplicate_wait_seconds: float | None = None,
        publish_timeout: float = 10.0,
        on_queued: Callable[[int], None] | None = None,
        ledger: JobLedger | None = None,
    ) -> None:
        """`on_queued(n)` is told after `n` new jobs were published; it must return at once."""
        self._on_queued = on_queued
        self._documents = documents
        self._blobs = blobs
        self._publisher = publisher
        self._settings = settings
        self._limits = settings.request_limits
        self._ledger = ledger or JobLedger(documents, clock=clock)
        self._clock = clock
        lease = settings.recovery.upload_claim_lease_seconds if claim_lease_seconds is None else claim_lease_seconds
        # Long enough for a claim whose holder died to lapse, so the waiting delivery takes it over.
        wait = max(30.0, 2 * lease) if duplicate_wait_seconds is None else duplicate_wait_seconds
        self._claims = LeaseClaims(documents, c.IDEMPOTENCY, lease_seconds=lease, wait_seconds=wait, clock=clock)

        self._publish_timeout = publish_timeout

    def handle(self, event: StorageNotification) -> UploadOutcome:
        names = self._settings.names
        if event.event_type != FINALIZE:
            log.info("ignoring %s event for %s: only %s makes a batch", event.event_type, event.uri, FINALIZE)
            return UploadOutcome("ignored", reason="event type")
        if event.bucket != names.inbox_bucket:
            log.info("ignoring upload to %s: not the inbox bucket %s", event.uri, names.inbox_bucket)
            return UploadOutcome("ignored", reason="bucket")
        user_id, _, path = event.name.partition("/")
        if not user_id or not path or path.endswith("/"):
            log.warning("ignoring %s: uploads go under <user_id>/<path>.jsonl", event.uri)
            return UploadOutcome("ignored", reason="path")
        batch_id = batch_id_for(event.bucket, event.name, event.generation)
        context = {"batch_id": batch_id, "user_id": user_id}

        user = self._user(user_id)
        try:
            if user is None:
                raise Rejected("unknown_user", f"there is no user {user_id!r}: upload under your own user id")
            if not path.endswith(".jsonl"):
                raise Rejected("invalid_argument", "only files named *.jsonl become batches")
            data = self._read(event)
            if data is None:
                return UploadOutcome("ignored", batch_id, reason="stale generation")
            lines = parse_lines(data, self._limits)
        except Rejected as rejected:
            self._reject(user, user_id, batch_id, event, rejected)
            log.warning("upload %s rejected: %s", event.uri, rejected.message, extra=context)
            return UploadOutcome("rejected", batch_id, reason=rejected.code)

        lease = self._claims.acquire(batch_id)
        if lease is None:
            log.info("upload %s was already ingested", event.uri, extra=context)
            return UploadOutcome("duplicate", batch_id)
        try:
            outcome = self._ingest(user, batch_id, event, lines, lease)
        except BaseException:
            if not lease.fail():
                log.warning("could not release the ingestion claim", extra=context)
            raise
        lease.finish()
        log.info(
            "upload %s became batch with %d jobs, %d errors",
            event.uri,
            outcome.jobs,
            outcome.errors,
            extra=context,
        )
        return outcome

    # ------------------------------------------------------------------ reading
    def _user(self, user_id: str) -> User | None:
        if not USER_ID_PATTERN.match(user_id):
            return None
        doc = self._documents.get(c.USERS, user_id)
        if doc is None:
            return None
        user = User.from_document(user_id, doc)
        return None if user.disabled else user

    def _read(self, event: StorageNotification) -> bytes | None:
        """The object's bytes, or None when the event is for an older generation (the newer
        upload has its own event and its own batch)."""
        limit = self._limits.max_upload_bytes
        info = self._blobs.stat(event.bucket, event.name)
        if info is None or str(info.generation) != event.generation:
            log.info("ignoring %s generation %s: the object is gone or newer", event.uri, event.generation)
            return None
        if info.size > limit:
            raise Rejected("payload_too_large", f"the file is {info.size} bytes; the limit is {limit}")
        data = self._blobs.read(event.bucket, event.name, max_bytes=limit + 1)
        if len(data) > limit:
            raise Rejected("payload_too_large", f"the file is larger than the limit of {limit} bytes")
        return data

    # ------------------------------------------------------------------ ingesting
    def _ingest(
        self, user: User, batch_id: str, event: StorageNotification, lines: list[Line], lease: Lease
    ) -> UploadOutcome:
        now = self._clock()
        valid = [line for line in lines if line.request is not None]
        errors = [{"line": line.number, "error": line.error} for line in lines if line.error is not None]
        invalid = len(errors)
        batch = Batch(
            id=batch_id,
            user_id=user.id,
            source_uri=event.uri,
            status=BatchStatus.RUNNING,
            created_at=now,
            updated_at=now,
            total_lines=len(lines),
            jobs_total=len(valid),  # an upper bound until ingestion ends, so the batch cannot complete early
            invalid_lines=invalid,
        )
        try:
            self._documents.create(c.BATCHES, batch_id, batch.to_document())
        except AlreadyExists:
            pass  # a delivery before us got this far
        queued: list[Job] = []
        admitted = 0
        for line in valid:
            assert line.request is not None
            lease.renew_if_due()
            job = self._job(user, batch_id, line.number, line.request, now)
            try:
                current = self._admit(user, job)
            except ResourceExhausted as exc:
                errors.append({"line": line.number, "error": {"code": ResourceExhausted.code, "message": exc.message}})
                continue
            admitted += 1
            if current.status is JobStatus.QUEUED:
                queued.append(current)
        for job in queued:
            lease.renew_if_due()
            self._publish(job)
        if queued and self._on_queued is not None:
            self._on_queued(len(queued))
        errors_uri = self._write_errors(user.id, batch_id, sorted(errors, key=lambda e: e["line"]))
        completed = self._finalize(batch_id, admitted, invalid, errors_uri)
        if completed is not None:
            write_summary(self._blobs, self._documents, self._settings.names.outputs_bucket, completed)
        return UploadOutcome("ingested", batch_id, jobs=admitted, errors=len(errors))

    def _job(self, user: User, batch_id: str, line: int, request: dict[str, Any], now: dt.datetime) -> Job:
        job_id = batch_job_id(batch_id, line)
        if request.get("seed") is None:
            # Derived, not random, so a replay computes the very same job.
            request = {**request, "seed": int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % (MAX_SEED + 1)}
        return Job(
            id=job_id,
            user_id=user.id,
            status=JobStatus.QUEUED,
            input=request,
            model_name=request.get("model") or self._settings.default_model,
            created_at=now,
            updated_at=now,
            batch_id=batch_id,
            batch_line=line,
        )

    def _admit(self, user: User, job: Job) -> Job:
        def run(tx: Transaction) -> Job:
            doc = tx.get(c.JOBS, job.id)
            if doc is not None:
                return Job.from_document(job.id, doc)
            self._ledger.admit(tx, user, job, enforce_concurrency=False)
            return job

        try:
            return self._documents.transaction(run)
        except AlreadyExists:
            return self._ledger.require(job.id)

    def _publish(self, job: Job) -> None:
        try:
            publish_job(self._publisher, self._settings.names.jobs_topic, job, timeout=self._publish_timeout)
        except AdapterError as exc:
            # The event is retried; the retry finds the job queued and publishes it then.
            raise BackendUnavailable(f"could not publish job {job.id}: {exc}") from exc

    def _write_errors(self, user_id: str, batch_id: str, errors: list[dict[str, Any]]) -> str | None:
        if not errors:
            return None
        bucket = self._settings.names.outputs_bucket
        name = f"{batch_prefix(user_id, batch_id)}/errors.jsonl"
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in errors).encode()
        try:
            self._blobs.create(bucket, name, body, content_type="application/x-ndjson")
        except AlreadyExists:
            pass
        return f"gs://{bucket}/{name}"

    def _finalize(self, batch_id: str, admitted: int, invalid: int, errors_uri: str | None) -> Batch | None:
        """Set the real job count; the batch is complete now if every admitted job already
        ended (or there were none). Returns the batch when this call completed it."""

        def run(tx: Transaction) -> Batch | None:
            doc = tx.get(c.BATCHES, batch_id)
            if doc is None:
                raise AdapterError(f"batch {batch_id} vanished during ingestion")
            batch = Batch.from_document(batch_id, doc)
            batch.jobs_total = admitted
            batch.invalid_lines = invalid
            batch.errors_uri = errors_uri
            batch.updated_at = self._clock()
            done = batch.status is BatchStatus.RUNNING and batch.terminal_jobs >= batch.jobs_total
            if done:
                batch.status = BatchStatus.COMPLETED
                batch.completed_at = batch.updated_at
            tx.set(c.BATCHES, batch_id, batch.to_document())
            return batch if done else None

        return self._documents.transaction(run)

    # ------------------------------------------------------------------ rejecting
    def _reject(
        self, user: User | None, user_id: str, batch_id: str, event: StorageNotification, rejected: Rejected
    ) -> None:
        now = self._clock()
        bucket = self._settings.names.outputs_bucket
        body = {
            "batch_id": batch_id,
            "source": event.uri,
            "status": BatchStatus.REJECTED.value,
            "error": {"code": rejected.code, "message": rejected.message},
            "rejected_at": rfc3339(now),
        }
        name = f"{batch_prefix(user_id, batch_id)}/rejected.json"
        try:
            self._blobs.create(bucket, name, json.dumps(body, indent=2).encode(), content_type="application/json")
        except AlreadyExists:
            pass
        if user is not None:
            batch = Batch(
                id=batch_id,
                user_id=user.id,
                source_uri=event.uri,
                status=BatchStatus.REJECTED,
                created_at=now,
                updated_at=now,
                completed_at=now,
                rejection=f"{rejected.code}: {rejected.message}",
            )
            try:
                self._documents.create(c.BATCHES, batch_id, batch.to_document())
            except AlreadyExists:
                pass


__all__ = [
    "FINALIZE",
    "MalformedNotification",
    "StorageNotification",
    "UploadOutcome",
    "UploadTrigger",
    "decode_message_data",
]
