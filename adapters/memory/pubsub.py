"""An in-process Pub/Sub: topics, subscriptions, leases, retries and dead letters.

`MemoryPubSub` implements `Publisher`, `Subscriber` and `MessagingAdmin` at once. It keeps
Pub/Sub's delivery model:

- a message published to a topic is copied into every subscription the topic has at that
  moment (none: it is dropped);
- a delivered message is leased for the subscription's ack deadline (a streaming pull keeps
  extending the lease for up to `max_lease_seconds`); a lease that lapses, a nack and a
  `modify_ack_deadline(0)` all make the message available again after the retry backoff;
- `delivery_attempt` counts deliveries on subscriptions with a dead-letter topic (it is always
  1 elsewhere, as Pub/Sub does not count there); a message that has been delivered
  `max_delivery_attempts` times and is given back again is forwarded to the dead-letter topic
  with Pub/Sub's `CloudPubSubDeadLetterSource*` attributes added;
- an ack or nack that arrives after the message's lease ended is ignored.

The retry backoff is Pub/Sub's exponential one (`retry_minimum_backoff_seconds` doubling per
attempt up to the maximum) multiplied by `backoff_scale`, so unit tests need not wait 10 s;
pass `backoff_scale=1.0` for real timing. Ack deadlines are not scaled. Message retention and
push endpoints are not modelled: a push subscription is simply one that tests pull from.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core.ports import (
    MessagingAdmin,
    NotFound,
    Publisher,
    ReceivedMessage,
    StreamingPull,
    Subscriber,
    SubscriptionSpec,
)

log = logging.getLogger(__name__)

_MAX_IDLE_WAIT = 0.5  # seconds a waiting thread sleeps at most before re-checking leases


@dataclass(frozen=True)
class _Message:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: dt.datetime


@dataclass(eq=False)
class _Entry:
    """One message's state in one subscription."""

    message: _Message
    seq: int
    available_at: float
    attempts: int = 0
    ack_id: str | None = None
    deadline: float = 0.0
    stream: _Stream | None = None


@dataclass(eq=False)
class _Subscription:
    spec: SubscriptionSpec
    entries: dict[str, _Entry] = field(default_factory=dict)


class MemoryPubSub(Publisher, Subscriber, MessagingAdmin):
    def __init__(self, *, backoff_scale: float = 0.01, max_callback_threads: int = 16) -> None:
        self._cond = threading.Condition()
        self._topics: dict[str, list[str]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self._backoff_scale = backoff_scale
        self._max_callback_threads = max_callback_threads

    # ------------------------------------------------------------------ admin
    def ensure_topic(self, topic: str) -> None:
        with self._cond:
            self._topics.setdefault(topic, [])

    def ensure_subscription(self, spec: SubscriptionSpec) -> None:
        """Create the subscription if it does not exist (an existing one is left as it is, like
        the GCP adapter does). Refuses what Pub/Sub refuses: ack deadlines outside 10..600 s,
        delivery attempts outside 5..100."""
        if not 10 <= spec.ack_deadline_seconds <= 600:
            raise ValueError(f"ack_deadline_seconds must be 10..600, got {spec.ack_deadline_seconds}")
        if spec.dead_letter_topic is not None and not 5 <= spec.max_delivery_attempts <= 100:
            raise ValueError(f"max_delivery_attempts must be 5..100, got {spec.max_delivery_attempts}")
        with self._cond:
            for topic in (spec.topic, spec.dead_letter_topic):
                if topic is not None and topic not in self._topics:
                    raise NotFound(f"topic {topic} not found")
            if spec.name in self._subscriptions:
                return  # like the GCP adapter: an existing subscription is left as it is
            self._subscriptions[spec.name] = _Subscription(spec)
            self._topics[spec.topic].append(spec.name)

    def delete_subscription(self, name: str) -> None:
        with self._cond:
            sub = self._subscriptions.pop(name, None)
            if sub is not None and sub.spec.topic in self._topics:
                self._topics[sub.spec.topic].remove(name)
            self._cond.notify_all()

    def delete_topic(self, topic: str) -> None:
        """Not part of the port (tests clean up with it). Its subscriptions stay, detached."""
        with self._cond:
            self._topics.pop(topic, None)

    # ------------------------------------------------------------------ publish
    def publish(
        self,
        topic: str,
        data: bytes,
        attributes: Mapping[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> str:
        if not isinstance(data, bytes):
            raise TypeError(f"message data must be bytes, got {type(data).__name__}")
        attrs = dict(attributes or {})
        for k, v in attrs.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"message attributes must be str to str, got {k!r}: {v!r}")
        if not data and not attrs:
            raise ValueError("a message needs data or at least one attribute")
        with self._cond:
            if topic not in self._topics:
                raise NotFound(f"topic {topic} not found")
            message_id = self._fan_out(topic, bytes(data), attrs)
            self._cond.notify_all()
        return message_id

    def _fan_out(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        message = _Message(str(next(self._ids)), data, attributes, dt.datetime.now(dt.UTC))
        now = time.monotonic()
        for name in self._topics[topic]:
            sub = self._subscriptions[name]
            sub.entries[message.message_id] = _Entry(message, seq=next(self._ids), available_at=now)
        return message.message_id

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        *,
        max_messages: int = 10,
        max_lease_seconds: int = 3600,
        lease_extension_seconds: int | None = None,
    ) -> StreamingPull:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        # `lease_extension_seconds` bounds how long a dead subscriber holds messages; an
        # in-process stream cannot die without `cancel` giving its messages straight back.
        stream = _Stream(self, subscription, callback, max_messages, max_lease_seconds)
        stream.start()
        return stream

    def pull(self, subscription: str, max_messages: int = 10, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                sub = self._require(subscription)
                taken = self._take(sub, max_messages, None)
                if taken:
                    return [_MemoryMessage(self, sub.spec, e) for e in taken]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(min(remaining, self._next_event(sub)))

    # ------------------------------------------------------------------ lease bookkeeping (lock held)
    def _require(self, subscription: str) -> _Subscription:
        sub = self._subscriptions.get(subscription)
        if sub is None:
            raise NotFound(f"subscription {subscription} not found")
        return sub

    def _take(self, sub: _Subscription, limit: int, stream: _Stream | None) -> list[_Entry]:
        now = time.monotonic()
        self._expire(sub, now)
        ready = sorted(
            (e for e in sub.entries.values() if e.ack_id is None and e.available_at <= now),
            key=lambda e: (e.available_at, e.seq),
        )[:limit]
        for entry in ready:
            entry.attempts += 1
            entry.ack_id = uuid.uuid4().hex
            entry.stream = stream
            lease = stream.max_lease_seconds if stream is not None else sub.spec.ack_deadline_seconds
            entry.deadline = now + lease
            if stream is not None:
                stream.outstanding += 1
        return ready

    def _expire(self, sub: _Subscription, now: float) -> None:
        for entry in list(sub.entries.values()):
            if entry.ack_id is not None and entry.deadline <= now:
                self._give_back(sub, entry, now)

    def _give_back(self, sub: _Subscription, entry: _Entry, now: float) -> None:
        """End the lease of an unacknowledged message: dead-letter it or schedule a retry."""
        if entry.stream is not None:
            entry.stream.outstanding -= 1
        entry.ack_id = None
        entry.stream = None
        spec = sub.spec
        if spec.dead_letter_topic is not None and entry.attempts >= spec.max_delivery_attempts:
            del sub.entries[entry.message.message_id]
            if spec.dead_letter_topic in self._topics:
                attributes = {
                    **entry.message.attributes,
                    "CloudPubSubDeadLetterSourceSubscription": spec.name,
                    "CloudPubSubDeadLetterSourceDeliveryCount": str(entry.attempts),
                }
                self._fan_out(spec.dead_letter_topic, entry.message.data, attributes)
            log.info("message %s dead-lettered from %s", entry.message.message_id, spec.name)
        else:
            backoff = min(
                spec.retry_maximum_backoff_seconds,
                spec.retry_minimum_backoff_seconds * 2 ** max(0, entry.attempts - 1),
            )
            entry.available_at = now + backoff * self._backoff_scale
        self._cond.notify_all()

    def _next_event(self, sub: _Subscription) -> float:
        """Seconds until a lease lapses or a retry becomes due (bounded)."""
        now = time.monotonic()
        times = [e.deadline if e.ack_id is not None else e.available_at for e in sub.entries.values()]
        future = [t - now for t in times if t > now]
        return max(0.001, min([_MAX_IDLE_WAIT, *future]))

    def _settle(self, subscription: str, message_id: str, ack_id: str, ack_deadline: int | None) -> None:
        """Ack (`ack_deadline` None), nack (0) or extend a lease; stale ack ids are ignored."""
        with self._cond:
            sub = self._subscriptions.get(subscription)
            entry = sub.entries.get(message_id) if sub is not None else None
            if sub is None or entry is None or entry.ack_id != ack_id:
                return
            now = time.monotonic()
            if ack_deadline is None:
                del sub.entries[message_id]
                if entry.stream is not None:
                    entry.stream.outstanding -= 1
                self._cond.notify_all()
            elif ack_deadline == 0:
                self._give_back(sub, entry, now)
            elif entry.stream is not None:
                # Lease management already holds a streamed message; never shorten its lease.
                entry.deadline = max(entry.deadline, now + ack_deadline)
            else:
                entry.deadline = now + ack_deadline

    def _release_stream(self, stream: _Stream) -> None:
        with self._cond:
            sub = self._subscriptions.get(stream.subscription)
            if sub is None:
                return
            now = time.monotonic()
            for entry in list(sub.entries.values()):
                if entry.stream is stream and entry.ack_id is not None:
                    self._give_back(sub, entry, now)


class _MemoryMessage(ReceivedMessage):
    def __init__(self, hub: MemoryPubSub, spec: SubscriptionSpec, entry: _Entry) -> None:
        assert entry.ack_id is not None
        self._hub = hub
        self._subscription = spec.name
        self._ack_id = entry.ack_id
        self._settled = False
        self.message_id = entry.message.message_id
        self.data = entry.message.data
        self.attributes = dict(entry.message.attributes)
        self.publish_time = entry.message.publish_time
        self.delivery_attempt = entry.attempts if spec.dead_letter_topic is not None else 1

    def ack(self) -> None:
        self._finish(None)

    def nack(self) -> None:
        self._finish(0)

    def modify_ack_deadline(self, seconds: int) -> None:
        if not 0 <= seconds <= 600:
            raise ValueError(f"an ack deadline is 0..600 seconds, got {seconds}")
        if seconds == 0:
            self._finish(0)
        elif not self._settled:
            self._hub._settle(self._subscription, self.message_id, self._ack_id, seconds)

    def _finish(self, ack_deadline: int | None) -> None:
        if self._settled:
            return
        self._settled = True
        self._hub._settle(self._subscription, self.message_id, self._ack_id, ack_deadline)

    def __repr__(self) -> str:
        return f"<message {self.message_id} attempt {self.delivery_attempt} on {self._subscription}>"


class _Stream(StreamingPull):
    """A streaming pull: one dispatcher thread, callbacks on a small thread pool."""

    def __init__(
        self,
        hub: MemoryPubSub,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        max_messages: int,
        max_lease_seconds: int,
    ) -> None:
        self._hub = hub
        self.subscription = subscription
        self._callback = callback
        self.max_messages = max_messages
        self.max_lease_seconds = max_lease_seconds
        self.outstanding = 0  # guarded by the hub's lock
        self._cancelled = threading.Event()
        self._error: BaseException | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=min(max_messages, hub._max_callback_threads), thread_name_prefix=f"memsub-{subscription}"
        )
        self._thread = threading.Thread(target=self._run, name=f"memsub-{subscription}-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._hub._cond:
            self._hub._cond.notify_all()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"streaming pull on {self.subscription} still running after {timeout} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        hub = self._hub
        try:
            while not self._cancelled.is_set():
                with hub._cond:
                    sub = hub._require(self.subscription)
                    hub._expire(sub, time.monotonic())  # lapsed leases free flow-control room
                    free = self.max_messages - self.outstanding
                    taken = hub._take(sub, free, self) if free > 0 else []
                    if not taken:
                        hub._cond.wait(hub._next_event(sub))
                        continue
                    messages = [_MemoryMessage(hub, sub.spec, e) for e in taken]
                for message in messages:
                    self._pool.submit(self._deliver, message)
        except NotFound as exc:
            self._error = exc
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            hub._release_stream(self)

    def _deliver(self, message: _MemoryMessage) -> None:
        if self._cancelled.is_set():
            return  # the lease is given back when the stream stops
        try:
            self._callback(message)
        except Exception:
            # Pub/Sub's client does the same: log, and give the message back.
            log.exception("subscriber callback failed on %s; nacking it", message)
            message.nack()
