"""Publisher / Subscriber / MessagingAdmin contract: memory fake, Pub/Sub emulator, Pub/Sub.

Subscriptions with a dead-letter policy use Pub/Sub's smallest allowed attempts (5) and a
short retry backoff; the emulator adds about 2 s per redelivery after the second, so the
dead-letter case takes about 8 s there.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from core.ports import NotFound, ReceivedMessage
from tests.contract.conftest import MESSAGING_BACKENDS, ContractBackend, make_backend


@pytest.fixture(params=MESSAGING_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ContractBackend]:
    """The suite's backends plus the emulator with StreamingPull (both pull modes of the adapter)."""
    yield from make_backend(request, request.param)


FAST_RETRY = {"retry_minimum_backoff_seconds": 0.1, "retry_maximum_backoff_seconds": 0.5}


def _pull_until(backend: ContractBackend, subscription: str, count: int, timeout: float = 15) -> list[ReceivedMessage]:
    """Pull until `count` messages arrived (Pub/Sub may return fewer per call than are waiting)."""
    deadline = time.monotonic() + timeout
    got: list[ReceivedMessage] = []
    while len(got) < count and (remaining := deadline - time.monotonic()) > 0:
        got += backend.subscriber.pull(subscription, max_messages=count - len(got), timeout=remaining)
    return got


class Collector:
    """A streaming-pull callback that records messages and settles them with `settle`."""

    def __init__(self, settle: Callable[[ReceivedMessage], None] = lambda m: m.ack()) -> None:
        self.messages: list[ReceivedMessage] = []
        self._settle = settle
        self._changed = threading.Condition()

    def __call__(self, message: ReceivedMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        self._settle(message)

    def wait_for(self, count: int, timeout: float = 15) -> list[ReceivedMessage]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)


def test_publish_with_attributes_and_pull(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)

    message_id = backend.publisher.publish(topic, b"job_1", {"job_id": "job_1", "user_id": "u1"})
    [message] = _pull_until(backend, sub, 1)
    message.ack()

    assert (message.message_id, message.data, dict(message.attributes)) == (
        message_id,
        b"job_1",
        {"job_id": "job_1", "user_id": "u1"},
    )
    assert message.delivery_attempt == 1
    assert before <= message.publish_time <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert backend.subscriber.pull(sub, timeout=1) == []  # acked: gone


def test_streaming_pull_receives_and_acks(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic)
    collector = Collector()
    stream = backend.subscriber.subscribe(sub, collector, max_messages=5)
    try:
        sent = {backend.publisher.publish(topic, f"m{i}".encode(), {"i": str(i)}) for i in range(4)}
        got = collector.wait_for(4)
        with pytest.raises(TimeoutError):
            stream.wait(timeout=0.1)  # still running
    finally:
        stream.cancel()
    stream.wait(timeout=10)  # ends quietly once cancelled

    assert {m.message_id for m in got} == sent
    assert sorted(m.data for m in got) == [b"m0", b"m1", b"m2", b"m3"]
    assert backend.subscriber.pull(sub, timeout=1) == []


def test_every_subscription_gets_its_own_copy(backend: ContractBackend) -> None:
    topic = backend.topic()
    first, second = backend.subscription(topic), backend.subscription(topic)

    backend.publisher.publish(topic, b"fan-out")
    late = backend.subscription(topic)  # created after the publish: gets nothing

    for sub in (first, second):
        [message] = _pull_until(backend, sub, 1)
        message.ack()
        assert message.data == b"fan-out"
    assert backend.subscriber.pull(late, timeout=1) == []


def test_nack_redelivers_with_the_attempt_counted(backend: ContractBackend) -> None:
    topic, dead = backend.topic(), backend.topic()
    sub = backend.subscription(topic, dead_letter_topic=dead, max_delivery_attempts=5, **FAST_RETRY)
    backend.publisher.publish(topic, b"again", {"k": "v"})

    [first] = _pull_until(backend, sub, 1)
    first.nack()
    [second] = _pull_until(backend, sub, 1)
    second.ack()

    assert (first.message_id, first.delivery_attempt) == (second.message_id, 1)
    assert second.delivery_attempt == 2
    assert (second.data, dict(second.attributes)) == (b"again", {"k": "v"})


def test_dead_letters_after_max_delivery_attempts(backend: ContractBackend) -> None:
    topic, dead = backend.topic(), backend.topic()
    sub = backend.subscription(topic, dead_letter_topic=dead, max_delivery_attempts=5, **FAST_RETRY)
    dead_sub = backend.subscription(dead)
    failing = Collector(settle=lambda m: m.nack())
    handler = Collector()

    streams = [backend.subscriber.subscribe(sub, failing), backend.subscriber.subscribe(dead_sub, handler)]
    try:
        backend.publisher.publish(topic, b"poison", {"job_id": "job_9"})
        [dead_lettered] = handler.wait_for(1, timeout=40)
    finally:
        for stream in streams:
            stream.cancel()
        for stream in streams:
            stream.wait(timeout=10)

    assert dead_lettered.data == b"poison"
    assert dead_lettered.attributes["job_id"] == "job_9"
    assert dead_lettered.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert [m.delivery_attempt for m in failing.messages] == [1, 2, 3, 4, 5]
    assert backend.subscriber.pull(sub, timeout=1) == []


def test_an_expired_lease_redelivers(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic, ack_deadline_seconds=10)
    backend.publisher.publish(topic, b"slow")

    [first] = _pull_until(backend, sub, 1)
    first.modify_ack_deadline(1)  # as if the worker stopped extending its lease
    started = time.monotonic()
    [again] = _pull_until(backend, sub, 1, timeout=15)
    waited = time.monotonic() - started
    again.ack()

    assert again.message_id == first.message_id
    assert 0.5 <= waited < 10  # after the shortened lease, well before the subscription's deadline


def test_a_held_lease_is_not_redelivered(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic, ack_deadline_seconds=10)
    backend.publisher.publish(topic, b"held")

    [message] = _pull_until(backend, sub, 1)
    message.modify_ack_deadline(30)

    assert backend.subscriber.pull(sub, timeout=2) == []
    message.ack()


def test_flow_control_bounds_outstanding_messages(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic)
    total, limit = 12, 3
    lock = threading.Lock()
    outstanding = peak = 0
    done = threading.Event()
    acked: list[bytes] = []

    def slow_ack(message: ReceivedMessage) -> None:
        nonlocal outstanding, peak
        with lock:
            outstanding += 1
            peak = max(peak, outstanding)
        time.sleep(0.1)
        with lock:
            outstanding -= 1
            acked.append(message.data)
            if len(acked) == total:
                done.set()
        message.ack()

    for i in range(total):
        backend.publisher.publish(topic, f"{i}".encode())
    stream = backend.subscriber.subscribe(sub, slow_ack, max_messages=limit)
    try:
        assert done.wait(timeout=30)
    finally:
        stream.cancel()
        stream.wait(timeout=10)

    assert sorted(acked, key=int) == [f"{i}".encode() for i in range(total)]
    assert 1 <= peak <= limit


def test_cancelled_stream_gives_unsettled_messages_back(backend: ContractBackend) -> None:
    topic = backend.topic()
    sub = backend.subscription(topic)
    received = threading.Event()

    def hold(message: ReceivedMessage) -> None:
        received.set()  # never settled

    stream = backend.subscriber.subscribe(sub, hold, max_messages=1)
    backend.publisher.publish(topic, b"unfinished")
    assert received.wait(timeout=15)
    stream.cancel()
    stream.wait(timeout=10)

    [again] = _pull_until(backend, sub, 1, timeout=20)
    again.ack()
    assert again.data == b"unfinished"


def test_missing_topic_and_subscription_are_not_found(backend: ContractBackend) -> None:
    with pytest.raises(NotFound):
        backend.publisher.publish(backend.unique("missing-topic"), b"x")
    stream = backend.subscriber.subscribe(backend.unique("missing-sub"), lambda m: m.ack())
    with pytest.raises(NotFound):
        stream.wait(timeout=15)
