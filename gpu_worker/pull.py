"""The worker's streaming pull: opened at start, watched in a thread of its own, replaced when
the monitor finds it stalled, cancelled at shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from core.ports import AdapterError, ReceivedMessage, StreamingPull, Subscriber

log = logging.getLogger(__name__)

# How long a message may be held at most (its lease is extended until then).
_MAX_LEASE_SECONDS = 3600


class Pull:
    def __init__(
        self,
        subscriber: Subscriber,
        subscription: str,
        on_message: Callable[[ReceivedMessage], None],
        *,
        max_messages: int,
        lease_extension_seconds: int,
        on_ended: Callable[[], None],
        worker_id: str,
    ) -> None:
        """`on_ended` is called when the live stream ends on its own (not one `reopen` replaced)."""
        self._subscriber = subscriber
        self.subscription = subscription
        self._on_message = on_message
        self._max_messages = max_messages
        self._lease_extension_seconds = lease_extension_seconds
        self._on_ended = on_ended
        self._worker_id = worker_id
        self._current: StreamingPull | None = None
        self._watchers: list[threading.Thread] = []
        self.last_message = time.monotonic()
        """When the last message arrived (or the stream was opened): the stall check reads it."""
        self.reopened = 0

    def open(self) -> None:
        pull = self._subscriber.subscribe(
            self.subscription,
            self._receive,
            max_messages=self._max_messages,
            max_lease_seconds=_MAX_LEASE_SECONDS,
            lease_extension_seconds=self._lease_extension_seconds,
        )
        self._current = pull
        self.last_message = time.monotonic()
        watcher = threading.Thread(target=self._watch, args=(pull,), name="worker-stream", daemon=True)
        watcher.start()
        self._watchers.append(watcher)

    def reopen(self) -> None:
        """Replace the live stream with a new one."""
        old = self._current
        self.open()
        self.reopened += 1
        if old is not None:
            old.cancel()

    def healthy(self) -> bool:
        return self._current is not None and self._current.healthy()

    def cancel(self) -> None:
        if self._current is not None:
            self._current.cancel()

    def join(self, timeout: float) -> None:
        for watcher in self._watchers:
            watcher.join(timeout=timeout)

    def _receive(self, message: ReceivedMessage) -> None:
        self.last_message = time.monotonic()
        self._on_message(message)

    def _watch(self, pull: StreamingPull) -> None:
        try:
            pull.wait()
        except AdapterError as exc:
            log.error("the streaming pull failed: %s", exc, extra={"worker_id": self._worker_id})
        if pull is self._current:
            self._on_ended()
