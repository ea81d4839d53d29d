"""The GCP adapters turn an unreachable backend into `BackendUnavailable` within their timeout,
so the API can answer 503 instead of hanging. Real clients against a port nobody listens on."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from adapters.gcp.firestore import FirestoreDocumentStore
from adapters.gcp.pubsub import PubSubPublisher, PubSubSubscriber
from adapters.gcp.storage import GcsBlobStore
from core.ports import BackendUnavailable

TIMEOUT = 1.5


@pytest.fixture
def dead_host() -> Iterator[str]:
    """An address on which nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"127.0.0.1:{port}"


def _assert_unavailable_within(call: Callable[[], object], limit: float) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        call()
    assert time.monotonic() - started < limit


def test_storage(dead_host: str) -> None:
    blobs = GcsBlobStore("p", endpoint=f"http://{dead_host}", timeout=TIMEOUT)

    _assert_unavailable_within(lambda: blobs.stat("b", "x"), TIMEOUT + 3)
    _assert_unavailable_within(lambda: blobs.create("b", "x", b"x"), TIMEOUT + 3)


def test_firestore(dead_host: str) -> None:
    documents = FirestoreDocumentStore("p", emulator_host=dead_host, timeout=TIMEOUT)

    _assert_unavailable_within(lambda: documents.get("jobs", "x"), TIMEOUT + 3)
    _assert_unavailable_within(lambda: documents.create("jobs", "x", {"a": 1}), TIMEOUT + 3)


def test_pubsub(dead_host: str) -> None:
    publisher = PubSubPublisher("p", emulator_host=dead_host, timeout=TIMEOUT)
    subscriber = PubSubSubscriber("p", emulator_host=dead_host, timeout=TIMEOUT)

    _assert_unavailable_within(lambda: publisher.publish("jobs", b"x", timeout=TIMEOUT), TIMEOUT + 3)
    _assert_unavailable_within(lambda: subscriber.pull("jobs-worker", timeout=TIMEOUT), TIMEOUT + 3)
