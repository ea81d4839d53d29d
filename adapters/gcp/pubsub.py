"""`Publisher`, `Subscriber` and `MessagingAdmin` on google-cloud-pubsub.

With `emulator_host` set, every client talks plain gRPC to that host (the client libraries'
own `PUBSUB_EMULATOR_HOST` handling is bypassed by handing them a ready insecure transport,
so the settings value alone decides); without it they reach Pub/Sub with the application
default credentials.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1.subscriber.message import Message as LibraryMessage
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport
from google.pubsub_v1.types import DeadLetterPolicy, PushConfig, RetryPolicy, Subscription

from adapters.gcp.errors import bounded_retry, translated
from core.ports import (
    BackendUnavailable,
    MessagingAdmin,
    Publisher,
    ReceivedMessage,
    StreamingPull,
    Subscriber,
    SubscriptionSpec,
)

log = logging.getLogger(__name__)

_MAX_CALLBACK_THREADS = 64


class _Clients:
    """Builds the library clients on first use, for one project and endpoint."""

    def __init__(self, project_id: str, emulator_host: str | None, timeout: float) -> None:
        self.project_id = project_id
        self.emulator_host = emulator_host.removeprefix("http://") if emulator_host else None
        self.timeout = timeout

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project_id}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project_id}/subscriptions/{subscription}"

    @functools.cached_property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self.emulator_host is None:
            return pubsub_v1.PublisherClient()
        channel = grpc.insecure_channel(self.emulator_host)
        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))

    @functools.cached_property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self.emulator_host is None:
            return pubsub_v1.SubscriberClient()
        channel = grpc.insecure_channel(self.emulator_host)
        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))

    def call_options(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "retry": bounded_retry(self.timeout)}


# --------------------------------------------------------------------------- admin
class PubSubAdmin(MessagingAdmin):
    def __init__(self, project_id: str, *, emulator_host: str | None = None, timeout: float = 30.0) -> None:
        self._c = _Clients(project_id, emulator_host, timeout)

    def ensure_topic(self, topic: str) -> None:
        with translated(f"create topic {topic}"):
            try:
                self._c.publisher.create_topic(name=self._c.topic_path(topic), **self._c.call_options())
            except gexc.AlreadyExists:
                pass

    def ensure_subscription(self, spec: SubscriptionSpec) -> None:
        """Create the subscription; an existing one is left as it is (Terraform owns changes in GCP).

        A dead-letter policy in GCP also needs the Pub/Sub service agent to be allowed to
        publish to the dead-letter topic and subscribe here (granted in Terraform)."""
        subscription = Subscription(
            name=self._c.subscription_path(spec.name),
            topic=self._c.topic_path(spec.topic),
            ack_deadline_seconds=spec.ack_deadline_seconds,
            message_retention_duration=dt.timedelta(seconds=spec.message_retention_seconds),
            retry_policy=RetryPolicy(
                minimum_backoff=dt.timedelta(seconds=spec.retry_minimum_backoff_seconds),
                maximum_backoff=dt.timedelta(seconds=spec.retry_maximum_backoff_seconds),
            ),
        )
        if spec.dead_letter_topic is not None:
            subscription.dead_letter_policy = DeadLetterPolicy(
                dead_letter_topic=self._c.topic_path(spec.dead_letter_topic),
                max_delivery_attempts=spec.max_delivery_attempts,
            )
        if spec.push_endpoint is not None:
            subscription.push_config = PushConfig(push_endpoint=spec.push_endpoint)
        with translated(f"create subscription {spec.name}"):
            try:
                self._c.subscriber.create_subscription(request=subscription, **self._c.call_options())
            except gexc.AlreadyExists:
                pass

    def delete_subscription(self, name: str) -> None:
        with translated(f"delete subscription {name}"):
            try:
                self._c.subscriber.delete_subscription(
                    subscription=self._c.subscription_path(name), **self._c.call_options()
                )
            except gexc.NotFound:
                pass

    def delete_topic(self, topic: str) -> None:
        """Not part of the port: for tests that clean up what they created."""
        with translated(f"delete topic {topic}"):
            try:
                self._c.publisher.delete_topic(topic=self._c.topic_path(topic), **self._c.call_options())
            except gexc.NotFound:
                pass


# --------------------------------------------------------------------------- publish
class PubSubPublisher(Publisher):
    def __init__(self, project_id: str, *, emulator_host: str | None = None, timeout: float = 30.0) -> None:
        self._c = _Clients(project_id, emulator_host, timeout)

    def publish(
        self,
        topic: str,
        data: bytes,
        attributes: Mapping[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> str:
        with translated(f"publish to {topic}"):
            future = self._c.publisher.publish(
                self._c.topic_path(topic),
                data,
                retry=bounded_retry(timeout),
                timeout=timeout,
                **dict(attributes or {}),
            )
            return str(future.result(timeout=timeout))


# --------------------------------------------------------------------------- subscribe
class _StreamedMessage(ReceivedMessage):
    """A message from a streaming pull; the library's lease manager holds its lease."""

    def __init__(self, message: LibraryMessage, stream: _LibraryStream) -> None:
        self._message = message
        self._stream = stream
        self.message_id = message.message_id
        self.data = message.data
        self.attributes = dict(message.attributes)
        self.publish_time = _utc(message.publish_time)
        self.delivery_attempt = message.delivery_attempt or 1

    def ack(self) -> None:
        if self._stream.settle(self):
            self._message.ack()

    def nack(self) -> None:
        if self._stream.settle(self):
            self._message.nack()

    def modify_ack_deadline(self, seconds: int) -> None:
        if seconds == 0:
            self.nack()
        else:
            self._message.modify_ack_deadline(seconds)


class _PulledMessage(ReceivedMessage):
    """A message from a synchronous pull; its lease is the subscription's ack deadline."""

    def __init__(self, clients: _Clients, subscription: str, received: Any) -> None:
        self._c = clients
        self._subscription = subscription
        self._ack_id = received.ack_id
        message = received.message
        self.message_id = message.message_id
        self.data = bytes(message.data)
        self.attributes = dict(message.attributes)
        self.publish_time = _utc(message.publish_time)
        self.delivery_attempt = received.delivery_attempt or 1

    def ack(self) -> None:
        with translated(f"ack {self.message_id}"):
            self._c.subscriber.acknowledge(
                subscription=self._subscription, ack_ids=[self._ack_id], **self._c.call_options()
            )

    def nack(self) -> None:
        self.modify_ack_deadline(0)

    def modify_ack_deadline(self, seconds: int) -> None:
        with translated(f"modify the ack deadline of {self.message_id}"):
            self._c.subscriber.modify_ack_deadline(
                subscription=self._subscription,
                ack_ids=[self._ack_id],
                ack_deadline_seconds=seconds,
                **self._c.call_options(),
            )


class _LibraryStream(StreamingPull):
    """Wraps the library's streaming pull future and tracks unsettled messages, so that
    `cancel()` can give them back at once (the library would let their leases run out)."""

    def __init__(self, clients: _Clients, subscription: str, callback: Callable[[ReceivedMessage], None]) -> None:
        self._clients = clients
        self._subscription = subscription
        self._callback = callback
        self._lock = threading.Lock()
        self._unsettled: set[_StreamedMessage] = set()
        self._closing = False
        self._future: Any = None

    def start(self, future: Any) -> None:
        self._future = future

    def deliver(self, message: LibraryMessage) -> None:
        """The library's callback (on its scheduler's threads)."""
        wrapped = _StreamedMessage(message, self)
        with self._lock:
            if self._closing:
                message.nack()
                return
            self._unsettled.add(wrapped)
        try:
            self._callback(wrapped)
        except Exception:
            # What the library does too: log, and give the message back.
            log.exception("subscriber callback failed on message %s; nacking it", wrapped.message_id)
            wrapped.nack()

    def settle(self, message: _StreamedMessage) -> bool:
        """True the first time a message is settled (later acks and nacks are ignored)."""
        with self._lock:
            if message not in self._unsettled:
                return False
            self._unsettled.discard(message)
            return True

    def cancel(self) -> None:
        """Stop the stream, then give every unsettled message back with one unary
        modifyAckDeadline(0): after the stream (and its lease manager) stopped, so nothing
        extends those leases again."""
        with self._lock:
            self._closing = True
            unsettled, self._unsettled = self._unsettled, set()
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=self._clients.timeout)
            except Exception:  # the stream's own failure is wait()'s to report
                log.debug("streaming pull on %s ended with an error", self._subscription, exc_info=True)
        if not unsettled:
            return
        try:
            with translated(f"give back {len(unsettled)} messages on {self._subscription}"):
                self._clients.subscriber.modify_ack_deadline(
                    subscription=self._clients.subscription_path(self._subscription),
                    ack_ids=[m._message.ack_id for m in unsettled],
                    ack_deadline_seconds=0,
                    **self._clients.call_options(),
                )
        except BackendUnavailable:
            log.warning("could not give back messages on %s; their leases will lapse", self._subscription)

    def wait(self, timeout: float | None = None) -> None:
        """`TimeoutError` while the stream still runs; the stream's failure as a port error."""
        try:
            self._future.result(timeout=timeout)
        except concurrent.futures.CancelledError:
            return
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"streaming pull on {self._subscription} still running after {timeout} s") from None
        except gexc.GoogleAPIError as exc:
            with translated(f"streaming pull on {self._subscription}"):
                raise exc


class _PolledMessage(_PulledMessage):
    """A message from a polling pull: settling it also frees its place in the pull's flow control."""

    def __init__(self, clients: _Clients, subscription: str, received: Any, pull: _PollingPull) -> None:
        super().__init__(clients, subscription, received)
        self._pull = pull
        self.received_at = time.monotonic()

    @property
    def ack_id(self) -> str:
        return str(self._ack_id)

    def ack(self) -> None:
        if self._pull.settle(self):
            super().ack()

    def nack(self) -> None:
        if self._pull.settle(self):
            super().nack()


class _PollingPull(StreamingPull):
    """Unary Pull in a loop, with the library's duties done here: flow control (a pull asks only
    for the free places), lease extension (every third of `lease_extension_seconds`, for up to
    `max_lease_seconds`), callbacks on a thread pool, and giving unsettled messages back on
    `cancel`.

    Why not StreamingPull: the Pub/Sub emulator never forgets a stream that closed (its close
    handler fails inside the emulator), and keeps dispatching messages to dead streams round
    robin; after a few workers were killed almost nothing reaches the live ones, and reopening a
    stream only adds a dead one. A unary pull is only ever answered to a live caller, and a dead
    worker's messages come back at their ack deadline. Real Pub/Sub serves both; at GPU job rates
    (at most hundreds of messages a second) unary pull costs nothing that matters.
    """

    def __init__(
        self,
        clients: _Clients,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        *,
        max_messages: int,
        max_lease_seconds: int,
        lease_extension_seconds: int | None,
        poll_seconds: float,
    ) -> None:
        self._c = clients
        self._subscription = subscription
        self._path = clients.subscription_path(subscription)
        self._callback = callback
        self._max_messages = max_messages
        self._max_lease_seconds = max_lease_seconds
        self._deadline_seconds = max(10, min(600, lease_extension_seconds or 60))
        self._poll_seconds = poll_seconds
        self._cond = threading.Condition()
        self._outstanding: dict[str, _PolledMessage] = {}
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._failing_since: float | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(max_messages, _MAX_CALLBACK_THREADS), thread_name_prefix=f"pubsub-{subscription}"
        )
        self._puller = threading.Thread(target=self._pull_loop, name=f"pubsub-{subscription}-pull", daemon=True)
        self._leaser = threading.Thread(target=self._lease_loop, name=f"pubsub-{subscription}-lease", daemon=True)

    def start(self) -> None:
        self._puller.start()
        self._leaser.start()

    # ------------------------------------------------------------------ pulling
    def _pull_loop(self) -> None:
        backoff = 0.1
        try:
            while not self._closing.is_set():
                with self._cond:
                    while len(self._outstanding) >= self._max_messages and not self._closing.is_set():
                        self._cond.wait(0.5)
                    free = self._max_messages - len(self._outstanding)
                if self._closing.is_set():
                    return
                try:
                    response = self._c.subscriber.pull(
                        subscription=self._path, max_messages=free, timeout=self._poll_seconds, retry=None
                    )
                except gexc.DeadlineExceeded:
                    self._failing_since = None
                    continue  # nothing arrived within the poll
                except (gexc.NotFound, gexc.PermissionDenied, gexc.InvalidArgument) as exc:
                    self._error = exc
                    return
                except gexc.GoogleAPIError as exc:
                    # The backend is down or overloaded: keep trying, and say so through `healthy()`.
                    self._failing_since = self._failing_since or time.monotonic()
                    log.warning("pull from %s failed (%s); retrying in %.1f s", self._subscription, exc, backoff)
                    self._closing.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self._failing_since = None
                self._take(response.received_messages)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _take(self, received: Any) -> None:
        messages = [_PolledMessage(self._c, self._path, r, self) for r in received]
        with self._cond:
            closing = self._closing.is_set()
            if not closing:
                for message in messages:
                    self._outstanding[message.ack_id] = message
        if closing:  # arrived after cancel: straight back
            self._give_back(messages)
            return
        for message in messages:
            self._executor.submit(self._deliver, message)

    def _deliver(self, message: _PolledMessage) -> None:
        if self._closing.is_set():
            return  # given back by cancel()
        try:
            self._callback(message)
        except Exception:
            log.exception("subscriber callback failed on message %s; nacking it", message.message_id)
            message.nack()

    def settle(self, message: _PolledMessage) -> bool:
        """True the first time a message is settled (later acks and nacks are ignored)."""
        with self._cond:
            if self._outstanding.pop(message.ack_id, None) is None:
                return False
            self._cond.notify_all()
            return True

    # ------------------------------------------------------------------ leases
    def _lease_loop(self) -> None:
        every = max(1.0, self._deadline_seconds / 3)
        while not self._closing.wait(every):
            now = time.monotonic()
            with self._cond:
                held = [m for m in self._outstanding.values() if now - m.received_at < self._max_lease_seconds]
            for start in range(0, len(held), 500):
                chunk = held[start : start + 500]
                try:
                    self._c.subscriber.modify_ack_deadline(
                        subscription=self._path,
                        ack_ids=[m.ack_id for m in chunk],
                        ack_deadline_seconds=self._deadline_seconds,
                        **self._c.call_options(),
                    )
                except gexc.GoogleAPIError as exc:
                    log.warning("could not extend %d leases on %s: %s", len(chunk), self._subscription, exc)

    # ------------------------------------------------------------------ the port
    def healthy(self) -> bool:
        failing = self._failing_since
        return self._error is None and (failing is None or time.monotonic() - failing < 2 * self._poll_seconds)

    def cancel(self) -> None:
        self._closing.set()
        with self._cond:
            unsettled = list(self._outstanding.values())
            self._outstanding.clear()
            self._cond.notify_all()
        self._give_back(unsettled)

    def _give_back(self, messages: list[_PolledMessage]) -> None:
        if not messages:
            return
        try:
            with translated(f"give back {len(messages)} messages on {self._subscription}"):
                self._c.subscriber.modify_ack_deadline(
                    subscription=self._path,
                    ack_ids=[m.ack_id for m in messages],
                    ack_deadline_seconds=0,
                    **self._c.call_options(),
                )
        except BackendUnavailable:
            log.warning("could not give back messages on %s; their leases will lapse", self._subscription)

    def wait(self, timeout: float | None = None) -> None:
        self._puller.join(timeout)
        if self._puller.is_alive():
            raise TimeoutError(f"pull on {self._subscription} still running after {timeout} s")
        if self._error is not None:
            with translated(f"pull from {self._subscription}"):
                raise self._error


class PubSubSubscriber(Subscriber):
    def __init__(
        self,
        project_id: str,
        *,
        emulator_host: str | None = None,
        timeout: float = 30.0,
        pull_mode: str = "unary",
        poll_seconds: float = 5.0,
    ) -> None:
        """`pull_mode` is `unary` (the default: a polling loop of unary Pulls, see `_PollingPull`)
        or `streaming` (the library's StreamingPull)."""
        if pull_mode not in ("unary", "streaming"):
            raise ValueError(f"pull_mode must be unary or streaming, got {pull_mode!r}")
        self._c = _Clients(project_id, emulator_host, timeout)
        self._pull_mode = pull_mode
        self._poll_seconds = poll_seconds

    def subscribe(
        self,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        *,
        max_messages: int = 10,
        max_lease_seconds: int = 3600,
        lease_extension_seconds: int | None = None,
    ) -> StreamingPull:
        """Callbacks run on a pool of up to `min(max_messages, 64)` threads; a callback that
        raises is logged and its message nacked (the library's behaviour)."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if self._pull_mode == "unary":
            polling = _PollingPull(
                self._c,
                subscription,
                callback,
                max_messages=max_messages,
                max_lease_seconds=max_lease_seconds,
                lease_extension_seconds=lease_extension_seconds,
                poll_seconds=self._poll_seconds,
            )
            polling.start()
            return polling

        stream = _LibraryStream(self._c, subscription, callback)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(max_messages, _MAX_CALLBACK_THREADS), thread_name_prefix=f"pubsub-{subscription}"
        )
        with translated(f"subscribe to {subscription}"):
            future = self._c.subscriber.subscribe(
                self._c.subscription_path(subscription),
                callback=stream.deliver,
                flow_control=pubsub_v1.types.FlowControl(
                    max_messages=max_messages,
                    max_lease_duration=max_lease_seconds,
                    # Also bounds the stream's ack deadline, which is what a crashed subscriber's
                    # messages wait out before redelivery.
                    max_duration_per_lease_extension=lease_extension_seconds or 0,
                ),
                scheduler=ThreadScheduler(executor=executor),
            )
        stream.start(future)
        return stream

    def pull(self, subscription: str, max_messages: int = 10, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        path = self._c.subscription_path(subscription)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            with translated(f"pull from {subscription}"):
                try:
                    response = self._c.subscriber.pull(
                        subscription=path, max_messages=max_messages, timeout=remaining, retry=None
                    )
                except gexc.DeadlineExceeded:
                    return []  # nothing arrived within the timeout
            if response.received_messages:
                return [_PulledMessage(self._c, path, r) for r in response.received_messages]
        return []


def _utc(value: dt.datetime) -> dt.datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC)
