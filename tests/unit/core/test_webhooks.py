"""Webhooks: announced once, when the transition that ends a job commits; delivered over real
HTTP by `HttpWebhookSender` with bounded retries."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.http_webhooks import HttpWebhookSender
from adapters.memory import MemoryBlobStore, MemoryDocumentStore, MemoryWebhookSender
from core import collection_names as c
from core.jobs import Job, JobStatus
from core.ledger import JobLedger
from core.ports import BackendUnavailable
from core.webhooks import WebhookNotifier

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def queued(store: MemoryDocumentStore, job_id: str, webhook: str | None) -> None:
    job = Job(
        id=job_id,
        user_id="alice",
        status=JobStatus.QUEUED,
        input={"prompt": "x", "num_images": 1, "webhook": webhook},
        model_name="tiny-sd",
        created_at=NOW,
        updated_at=NOW,
    )
    store.create(c.JOBS, job_id, job.to_document())


def test_a_job_that_ends_is_announced_once_to_its_webhook() -> None:
    store, sender = MemoryDocumentStore(), MemoryWebhookSender()
    notifier = WebhookNotifier(sender, MemoryBlobStore(), url_ttl_seconds=60)
    ledger = JobLedger(store, on_terminal=notifier)
    queued(store, "j1", "https://hooks.example.test/done")
    queued(store, "j2", None)
    ledger.transition("j1", JobStatus.RUNNING)
    ledger.transition("j1", JobStatus.CANCELLED)
    ledger.transition("j1", JobStatus.CANCELLED)  # a duplicate finish announces nothing
    ledger.transition("j2", JobStatus.CANCELLED)  # no webhook, no call
    notifier.close()
    assert len(sender.delivered) == 1
    url, payload = sender.delivered[0]
    assert url == "https://hooks.example.test/done"
    assert payload["event"] == "job.cancelled"
    assert payload["job"]["id"] == "j1" and payload["job"]["status"] == "cancelled"


def test_an_unreachable_webhook_never_fails_the_transition() -> None:
    store, sender = MemoryDocumentStore(), MemoryWebhookSender()
    sender.unreachable.add("https://down.example.test/")
    notifier = WebhookNotifier(sender, MemoryBlobStore(), url_ttl_seconds=60)
    queued(store, "j1", "https://down.example.test/")
    JobLedger(store, on_terminal=notifier).transition("j1", JobStatus.FAILED)
    notifier.close()
    assert store.get(c.JOBS, "j1")["status"] == "failed"  # type: ignore[index]
    assert sender.delivered == []


class Receiver(http.server.BaseHTTPRequestHandler):
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        self.send_response(type(self).statuses.pop(0) if type(self).statuses else 200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.statuses, Receiver.bodies = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_http_sender_retries_server_errors_then_delivers(receiver: str) -> None:
    Receiver.statuses = [503, 200]
    HttpWebhookSender(backoff_seconds=0.01).deliver(receiver, {"event": "job.succeeded"})
    assert Receiver.bodies == [{"event": "job.succeeded"}] * 2


def test_http_sender_gives_up_at_once_on_a_refusal(receiver: str) -> None:
    Receiver.statuses = [400, 200]
    with pytest.raises(BackendUnavailable, match="HTTP 400"):
        HttpWebhookSender(backoff_seconds=0.01).deliver(receiver, {"event": "job.failed"})
    assert len(Receiver.bodies) == 1


def test_http_sender_bounds_its_attempts() -> None:
    with pytest.raises(BackendUnavailable, match="after 2 attempt"):
        HttpWebhookSender(timeout=0.5, attempts=2, backoff_seconds=0.01).deliver("http://127.0.0.1:9/", {})
