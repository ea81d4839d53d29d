"""Bounded waits: poll a resource with backoff until it is done or a deadline passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from client.errors import NetworkError, NotFound, RateLimited, Unavailable, WaitTimeout

T = TypeVar("T")


def poll_until(
    fetch: Callable[[], T],
    *,
    describe: str,
    timeout: float,
    poll_interval: float,
    max_poll_interval: float,
    on_progress: Callable[[T], None] | None,
    changed: Callable[[T, T], bool],
    done: Callable[[T], bool],
    tolerate_not_found: bool,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    max_consecutive_errors: int = 5,
) -> T:
    """Call `fetch` until `done` says yes, and return what it fetched last.

    `on_progress` sees the first state and every state that `changed` tells apart from the one
    before. The pause starts at `poll_interval` and grows (to `max_poll_interval`) while nothing
    changes or the API is busy; a `Retry-After` on a 429 or 503 sets it instead. More than
    `max_consecutive_errors` such failures in a row are raised, as is `NotFound` unless
    `tolerate_not_found`. After `timeout` seconds on `clock`: `WaitTimeout` (naming `describe`,
    with the last state seen)."""
    deadline = clock() + timeout
    interval = poll_interval
    last: T | None = None
    errors = 0
    while True:
        try:
            current = fetch()
        except NotFound:
            if not tolerate_not_found:
                raise
            pause = interval
        except (RateLimited, Unavailable, NetworkError) as exc:
            errors += 1
            if errors > max_consecutive_errors:
                raise
            retry_after = getattr(exc, "retry_after", None)
            pause = retry_after if retry_after is not None else interval
            interval = min(interval * 2, max_poll_interval)
        else:
            errors = 0
            is_new = last is None or changed(last, current)
            last = current
            if is_new and on_progress is not None:
                on_progress(current)
            if done(current):
                return current
            interval = poll_interval if is_new else min(interval * 1.5, max_poll_interval)
            pause = interval
        remaining = deadline - clock()
        if remaining <= 0:
            seen = "never found" if last is None else "not finished"
            raise WaitTimeout(f"{describe} {seen} after {timeout:g}s", last=last)
        sleep(min(pause, remaining))
