"""Create-only claim documents: at most one request or delivery does a piece of work at a time.

- `create_claim` is the primitive: create the claim document, or get the one that is there.
  Idempotent submits use it as is (`core.submission`: the first submit with a key admits the job,
  concurrent ones wait for it).
- `LeaseClaims` adds a lease for long work (ingesting an upload): the holder renews its claim
  every third of the lease; a claim whose holder failed, or stopped renewing for a lease, is taken
  over by the next delivery; a finished claim makes later deliveries do nothing. Waits are
  bounded (`core.polling.poll`); a delivery that cannot get the claim in time gets `Unavailable`
  and is retried by its sender.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import Unavailable
from core.polling import poll
from core.ports import AdapterError, AlreadyExists, DocumentStore, Transaction

INGESTING, FAILED, DONE = "ingesting", "failed", "done"
# Replays after a claim's TTL deletion still create nothing: what the claim guarded is create-only too.
_CLAIM_TTL = dt.timedelta(days=7)


def create_claim(documents: DocumentStore, collection: str, key: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Create the claim; None when this caller got it, else the claim that is there (None too if
    it vanished in between, so the caller may try again)."""
    try:
        documents.create(collection, key, data)
        return None
    except AlreadyExists:
        return documents.get(collection, key) or {}


class Lease:
    """A held claim: renew it while working, then finish or fail it."""

    def __init__(self, claims: LeaseClaims, key: str) -> None:
        self._claims = claims
        self.key = key
        self._renewed_at = time.monotonic()

    def renew_if_due(self) -> None:
        """Tell waiting deliveries this holder is alive (at most every third of the lease)."""
        if time.monotonic() - self._renewed_at < self._claims.lease_seconds / 3:
            return
        self._claims.documents.update(self._claims.collection, self.key, {"claimed_at": self._claims.clock()})
        self._renewed_at = time.monotonic()

    def finish(self) -> None:
        self._claims.documents.update(
            self._claims.collection, self.key, {"state": DONE, "done_at": self._claims.clock()}
        )

    def fail(self) -> bool:
        """Give the claim up at once (the next delivery takes it over without waiting). False when
        even that failed: then the lease lapses."""
        try:
            self._claims.documents.update(self._claims.collection, self.key, {"state": FAILED})
            return True
        except AdapterError:
            return False


class LeaseClaims:
    def __init__(
        self,
        documents: DocumentStore,
        collection: str,
        *,
        lease_seconds: float,
        wait_seconds: float,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.documents = documents
        self.collection = collection
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock

    def acquire(self, key: str) -> Lease | None:
        """The lease on `key`, or None when the work was done already. Waits (bounded) while a
        live holder renews it; raises `Unavailable` when that wait runs out."""
        done = object()

        def attempt() -> Lease | object | None:
            held = create_claim(self.documents, self.collection, key, self._document())
            if held is None or (held and self._take_over(key)):
                return Lease(self, key)
            return done if held.get("state") == DONE else None

        got = poll(attempt, timeout=self.wait_seconds, maximum=1.0)
        if got is None:
            raise Unavailable(f"{key} is being worked on by another delivery; retry later", 30)
        return got if isinstance(got, Lease) else None

    def _document(self) -> dict[str, Any]:
        now = self.clock()
        return {"state": INGESTING, "claimed_at": now, "expires_at": now + _CLAIM_TTL}

    def _take_over(self, key: str) -> bool:
        """Take a claim whose holder failed or has been silent longer than the lease."""

        def run(tx: Transaction) -> bool:
            claim = tx.get(self.collection, key)
            if claim is None or claim.get("state") == DONE:
                return False
            age = (self.clock() - claim["claimed_at"]).total_seconds()
            if claim.get("state") != FAILED and age < self.lease_seconds:
                return False
            tx.set(self.collection, key, self._document())
            return True

        return self.documents.transaction(run)
