"""One bounded poll with backoff, for the few waits that have no event to wait on (another
process's document appearing, a claim lapsing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    attempt: Callable[[], T | None],
    *,
    timeout: float,
    initial: float = 0.05,
    maximum: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Call `attempt` until it returns something other than None, waiting `initial` seconds after
    the first try and doubling up to `maximum`; None once `timeout` seconds have passed. The last
    try happens at the deadline, never after it."""
    deadline = time.monotonic() + timeout
    delay = initial
    while True:
        result = attempt()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sleep(min(delay, remaining))
        delay = min(delay * 2, maximum)
