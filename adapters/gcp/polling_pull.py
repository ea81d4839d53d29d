"""Unary Pull in a loop behind the `StreamingPull` port: the workers' default (see `PollingPull`)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from adapters.gcp.errors import translated
from adapters.gcp.pubsub_clients import MAX_CALLBACK_THREADS, PubSubClients, utc
from core.ports import BackendUnavailable, ReceivedMessage, StreamingPull

log = logging.getLogger(__name__)


class PulledMessage(ReceivedMessage):
    """A message from a synchronous pull; its lease is the subscription's ack deadline."""

    def __init__(self, clients: PubSubClients, subscription: str, received: Any) -> None:
        self._c = clients
        self._subscription = subscription
        self._ack_id = received.ack_id
        message = received.message
        self.message_id = message.message_id
        self.data = bytes(message.data)
        self.attributes = dict(message.attributes)
        self.publish_time = utc(message.publish_time)
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


class PolledMessage(PulledMessage):
    """A message from a polling pull: settling it also frees its place in the pull's flow control."""

    def __init__(self, clients: PubSubClients, subscription: str, received: Any, pull: PollingPull) -> None:
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


class PollingPull(StreamingPull):
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
        clients: PubSubClients,
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
        self._outstanding: dict[str, PolledMessage] = {}
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._failing_since: float | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(max_messages, MAX_CALLBACK_THREADS), thread_name_prefix=f"pubsub-{subscription}"
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
        messages = [PolledMessage(self._c, self._path, r, self) for r in received]
        with self._cond:
            closing = self._closing.is_set()
            if not closing:
                # A message back after its lease lapsed here replaces its old delivery, whose ack id
                # is dead: forget that one, or its flow-control place would be lost for good.
                again = {m.message_id for m in messages}
                for ack_id in [k for k, m in self._outstanding.items() if m.message_id in again]:
                    del self._outstanding[ack_id]
                for message in messages:
                    self._outstanding[message.ack_id] = message
        if closing:  # arrived after cancel: straight back
            self._give_back(messages)
            return
        for message in messages:
            self._executor.submit(self._deliver, message)

    def _deliver(self, message: PolledMessage) -> None:
        if self._closing.is_set():
            return  # given back by cancel()
        try:
            self._callback(message)
        except Exception:
            log.exception("subscriber callback failed on message %s; nacking it", message.message_id)
            message.nack()

    def settle(self, message: PolledMessage) -> bool:
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

    def _give_back(self, messages: list[PolledMessage]) -> None:
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
