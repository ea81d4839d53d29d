"""What the memory Pub/Sub does beyond the contract suite: scaled retry backoff, lease limits
of streaming pulls, callback failures and the service's own validation."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from adapters.memory import MemoryPubSub
from core.ports import NotFound, ReceivedMessage, SubscriptionSpec


def _hub(backoff_scale: float = 0.01) -> MemoryPubSub:
    hub = MemoryPubSub(backoff_scale=backoff_scale)
    hub.ensure_topic("t")
    spec = SubscriptionSpec("s", "t", retry_minimum_backoff_seconds=1, retry_maximum_backoff_seconds=4)
    hub.ensure_subscription(spec)
    return hub


def test_nack_backoff_is_the_retry_policy_times_the_scale() -> None:
    hub = _hub(backoff_scale=1.0)
    hub.publish("t", b"x")

    [message] = hub.pull("s", timeout=1)
    message.nack()
    started = time.monotonic()

    assert hub.pull("s", timeout=0.5) == []  # still backing off (1 s at full scale)
    [again] = hub.pull("s", timeout=2)
    assert 0.9 <= time.monotonic() - started < 2
    again.ack()


def test_scaled_backoff_redelivers_at_once() -> None:
    hub = _hub(backoff_scale=0.01)
    hub.publish("t", b"x")

    [message] = hub.pull("s", timeout=1)
    message.nack()

    [again] = hub.pull("s", timeout=0.5)
    assert again.message_id == message.message_id


def test_a_streamed_message_held_past_max_lease_is_redelivered() -> None:
    hub = _hub(backoff_scale=0.0)
    deliveries: list[float] = []
    second = threading.Event()

    def hold(message: ReceivedMessage) -> None:
        deliveries.append(time.monotonic())  # never settled
        if len(deliveries) == 2:
            second.set()

    stream = hub.subscribe("s", hold, max_messages=1, max_lease_seconds=1)
    try:
        hub.publish("t", b"long job")
        assert second.wait(timeout=5)
    finally:
        stream.cancel()
        stream.wait(timeout=5)

    assert deliveries[1] - deliveries[0] >= 0.9  # not before lease management gave up


def test_a_failing_callback_nacks_its_message(caplog: pytest.LogCaptureFixture) -> None:
    hub = _hub(backoff_scale=0.0)
    attempts: list[str] = []
    done = threading.Event()

    def flaky(message: ReceivedMessage) -> None:
        attempts.append(message.message_id)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        message.ack()
        done.set()

    with caplog.at_level(logging.ERROR, logger="adapters.memory.pubsub"):
        stream = hub.subscribe("s", flaky)
        try:
            hub.publish("t", b"x")
            assert done.wait(timeout=5)
        finally:
            stream.cancel()
            stream.wait(timeout=5)

    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert "callback failed" in caplog.text


def test_settling_twice_or_late_is_ignored() -> None:
    hub = _hub(backoff_scale=0.0)
    hub.publish("t", b"x")
    [message] = hub.pull("s", timeout=1)
    message.nack()
    [again] = hub.pull("s", timeout=1)

    message.ack()  # a stale delivery: must not remove the redelivered message's lease
    again.ack()
    again.nack()

    assert hub.pull("s", timeout=0.2) == []


def test_the_service_limits_are_enforced() -> None:
    hub = MemoryPubSub()
    hub.ensure_topic("t")
    with pytest.raises(ValueError):
        hub.ensure_subscription(SubscriptionSpec("s", "t", ack_deadline_seconds=5))
    with pytest.raises(ValueError):
        hub.ensure_subscription(SubscriptionSpec("s", "t", dead_letter_topic="t", max_delivery_attempts=2))
    with pytest.raises(NotFound):
        hub.ensure_subscription(SubscriptionSpec("s", "missing"))
    with pytest.raises(TypeError):
        hub.publish("t", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hub.publish("t", b"")


def test_a_deleted_topic_drops_publishes_but_keeps_its_subscriptions() -> None:
    hub = _hub()
    hub.publish("t", b"before")
    hub.delete_topic("t")

    with pytest.raises(NotFound):
        hub.publish("t", b"after")
    [message] = hub.pull("s", timeout=1)
    assert message.data == b"before"
