"""Job webhooks: when a job with a `webhook` URL ends, POST its job object there.

`WebhookNotifier` is handed to `JobLedger(on_terminal=...)`, so every terminal transition
(worker success or failure, cancel, dead letter) announces the job exactly when it commits,
and only once (a duplicate finish does not change the job and calls nothing). Delivery runs on
a small background pool with bounded retries (`core.ports.WebhookSender`); it never delays
or fails the transition. It is best effort: a receiver that stays down misses the call, and
`GET /v1/jobs/{id}` stays the source of truth.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from core.jobs import Job
from core.ports import AdapterError, BlobStore, WebhookSender

log = logging.getLogger(__name__)


class WebhookNotifier:
    def __init__(self, sender: WebhookSender, blobs: BlobStore, *, url_ttl_seconds: int, workers: int = 4) -> None:
        self._sender = sender
        self._blobs = blobs
        self._ttl = url_ttl_seconds
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")

    def __call__(self, job: Job) -> None:
        url = job.input.get("webhook")
        if not url:
            return
        payload = {"event": f"job.{job.status.value}", "job": self._public(job)}
        self._pool.submit(self._deliver, str(url), payload, job.id)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking calls and wait (up to the pool's own bounded retries) for those under way."""
        self._pool.shutdown(wait=timeout is None or timeout > 0)

    def _public(self, job: Job) -> dict[str, Any]:
        return job.to_public(lambda bucket, name: self._blobs.url(bucket, name, ttl_seconds=self._ttl))

    def _deliver(self, url: str, payload: dict[str, Any], job_id: str) -> None:
        try:
            self._sender.deliver(url, payload)
        except AdapterError as exc:
            log.warning("webhook not delivered: %s", exc, extra={"job_id": job_id})
            return
        log.info("webhook delivered", extra={"job_id": job_id})
