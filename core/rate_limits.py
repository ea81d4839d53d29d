"""The per-user submission rate limit: a fixed one-minute window counted in a shared document,
so every API instance sees the same count."""

from __future__ import annotations

import datetime as dt

from core import collection_names as c
from core.errors import ResourceExhausted
from core.ports import DocumentStore
from core.users import User

RATE_WINDOW_TTL = dt.timedelta(hours=1)


def count_request(documents: DocumentStore, user: User, now: dt.datetime) -> None:
    """Count one submission; `ResourceExhausted` (with the seconds left in the window) past the
    user's limit. Increment-then-read never under-counts under concurrency."""
    window = int(now.timestamp()) // 60
    doc_id = f"{user.id}_{window}"
    documents.increment(c.RATE_WINDOWS, doc_id, {"count": 1})
    count = int((documents.get(c.RATE_WINDOWS, doc_id) or {}).get("count", 0))
    if count == 1:
        # The window's first request marks it for Firestore's TTL deletion (terraform firestore module).
        documents.update(c.RATE_WINDOWS, doc_id, {"expires_at": now + RATE_WINDOW_TTL})
    if count > user.limits.requests_per_minute:
        retry_after = 60 - int(now.timestamp()) % 60
        raise ResourceExhausted(
            f"rate limit reached: {user.limits.requests_per_minute} submissions per minute",
            retry_after_seconds=max(1, retry_after),
        )
