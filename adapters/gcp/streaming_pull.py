"""The client library's StreamingPull behind the `StreamingPull` port (`GPUPIPE_WORKER_PULL_MODE=streaming`)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1.subscriber.message import Message as LibraryMessage

from adapters.gcp.errors import translated
from adapters.gcp.pubsub_clients import PubSubClients, utc
from core.ports import BackendUnavailable, ReceivedMessage, StreamingPull

log = logging.getLogger(__name__)


class StreamedMessage(ReceivedMessage):
    """A message from a streaming pull; the library's lease manager holds its lease."""

    def __init__(self, message: LibraryMessage, stream: LibraryStream) -> None:
        self._message = message
        self._stream = stream
        self.message_id = message.message_id
        self.data = message.data
        self.attributes = dict(message.attributes)
        self.publish_time = utc(message.publish_time)
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


class LibraryStream(StreamingPull):
    """Wraps the library's streaming pull future and tracks unsettled messages, so that
    `cancel()` can give them back at once (the library would let their leases run out)."""

    def __init__(self, clients: PubSubClients, subscription: str, callback: Callable[[ReceivedMessage], None]) -> None:
        self._clients = clients
        self._subscription = subscription
        self._callback = callback
        self._lock = threading.Lock()
        self._unsettled: set[StreamedMessage] = set()
        self._closing = False
        self._future: Any = None

    def start(self, future: Any) -> None:
        self._future = future

    def deliver(self, message: LibraryMessage) -> None:
        """The library's callback (on its scheduler's threads)."""
        wrapped = StreamedMessage(message, self)
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

    def settle(self, message: StreamedMessage) -> bool:
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
