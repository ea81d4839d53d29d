"""A webhook sender that records deliveries instead of sending them (unit tests)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from core.ports import BackendUnavailable, WebhookSender


class MemoryWebhookSender(WebhookSender):
    def __init__(self) -> None:
        self.delivered: list[tuple[str, dict[str, Any]]] = []
        self.unreachable: set[str] = set()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def deliver(self, url: str, payload: Mapping[str, Any]) -> None:
        if url in self.unreachable:
            raise BackendUnavailable(f"webhook {url} not delivered: unreachable")
        with self._arrived:
            self.delivered.append((url, dict(payload)))
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        """The deliveries, once at least `count` arrived (or the timeout passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.delivered) >= count, timeout=timeout)
            return list(self.delivered)
