"""The dynamic batcher: groups compatible jobs so the GPU runs them in one pipeline call.

Jobs with equal keys (model version, size, steps, scheduler, guidance) are compatible. A group
is released as a batch when it holds `max_batch_size` images or when its oldest job has waited
`max_wait_seconds`; among ready groups the one with the oldest job goes first. A batch never
splits a job, and a job with more images than `max_batch_size` runs alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    images: int
    since: float


class Batcher(Generic[T]):
    def __init__(
        self, max_batch_size: int, max_wait_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._max_images = max_batch_size
        self._max_wait = max(0.0, max_wait_seconds)
        self._clock = clock
        self._groups: dict[Hashable, list[_Waiting[T]]] = {}
        self._cond = threading.Condition()
        self._closed = False

    def put(self, key: Hashable, item: T, images: int = 1) -> None:
        with self._cond:
            self._groups.setdefault(key, []).append(_Waiting(item, max(1, images), self._clock()))
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return sum(len(g) for g in self._groups.values())

    def items(self) -> list[T]:
        with self._cond:
            return [w.item for group in self._groups.values() for w in group]

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out (and return) every waiting item the predicate selects."""
        removed: list[T] = []
        with self._cond:
            for key in list(self._groups):
                keep = []
                for waiting in self._groups[key]:
                    if predicate(waiting.item):
                        removed.append(waiting.item)
                    else:
                        keep.append(waiting)
                if keep:
                    self._groups[key] = keep
                else:
                    del self._groups[key]
        return removed

    def close(self) -> list[T]:
        """Stop releasing batches; wake any waiter; return what was still waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return self.remove(lambda _item: True)

    def next_batch(self, timeout: float) -> list[T] | None:
        """The next ready batch, or None when none became ready within `timeout` seconds (or the
        batcher is closed)."""
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._closed:
                now = self._clock()
                ready_key, wake_in = self._ready(now)
                if ready_key is not None:
                    return self._take(ready_key)
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining if wake_in is None else min(remaining, wake_in))
            return None

    def _ready(self, now: float) -> tuple[Hashable | None, float | None]:
        """The key of the ready group with the oldest item, or None and how long until one is due."""
        best: Hashable | None = None
        best_since = float("inf")
        due_in: float | None = None
        for key, group in self._groups.items():
            oldest = group[0].since
            full = sum(w.images for w in group) >= self._max_images
            if full or now - oldest >= self._max_wait:
                if oldest < best_since:
                    best, best_since = key, oldest
            else:
                wait = self._max_wait - (now - oldest)
                due_in = wait if due_in is None else min(due_in, wait)
        return best, due_in

    def _take(self, key: Hashable) -> list[T]:
        group = self._groups[key]
        taken: list[T] = []
        images = 0
        rest: list[_Waiting[T]] = []
        for waiting in group:
            if not taken or (images + waiting.images <= self._max_images and not rest):
                taken.append(waiting.item)
                images += waiting.images
            else:
                rest.append(waiting)
        if rest:
            self._groups[key] = rest
        else:
            del self._groups[key]
        return taken
