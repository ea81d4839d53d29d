"""What the memory document store does beyond the contract suite: optimistic retries made
deterministic, Firestore's value rules, and its refusal of reads after writes."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from adapters.memory import MemoryDocumentStore
from adapters.memory.documents import ReadAfterWrite
from core.ports import Transaction, TransactionAborted


def test_a_write_between_read_and_commit_makes_the_transaction_run_again() -> None:
    store = MemoryDocumentStore()
    store.set("c", "counter", {"n": 0})
    attempts: list[int] = []

    def add_one(tx: Transaction) -> None:
        current = tx.get("c", "counter")
        assert current is not None
        attempts.append(current["n"])
        if len(attempts) == 1:
            store.set("c", "counter", {"n": 10})  # a concurrent writer gets in first
        tx.set("c", "counter", {"n": current["n"] + 1})

    store.transaction(add_one)

    assert attempts == [0, 10]
    assert store.get("c", "counter") == {"n": 11}


def test_a_document_that_appears_after_reading_absent_is_a_conflict() -> None:
    store = MemoryDocumentStore()
    runs = 0

    def claim(tx: Transaction) -> bool:
        nonlocal runs
        runs += 1
        exists = tx.get("c", "lock") is not None
        if runs == 1:
            store.set("c", "lock", {"owner": "other"})
        if not exists:
            tx.set("c", "lock", {"owner": "me"})
        return not exists

    assert store.transaction(claim) is False
    assert runs == 2
    assert store.get("c", "lock") == {"owner": "other"}


def test_endless_conflicts_give_up_after_max_attempts() -> None:
    store = MemoryDocumentStore(retry_backoff_seconds=0)
    store.set("c", "hot", {"n": 0})
    runs = 0

    def always_overtaken(tx: Transaction) -> None:
        nonlocal runs
        runs += 1
        current = tx.get("c", "hot") or {}
        store.set("c", "hot", {"n": runs})
        tx.set("c", "hot", {"n": current.get("n", 0) + 100})

    with pytest.raises(TransactionAborted):
        store.transaction(always_overtaken, max_attempts=3)
    assert runs == 3
    assert store.get("c", "hot") == {"n": 3}


def test_reads_after_writes_are_refused_like_firestore() -> None:
    store = MemoryDocumentStore()

    def read_late(tx: Transaction) -> None:
        tx.set("c", "a", {"x": 1})
        tx.get("c", "b")

    with pytest.raises(ReadAfterWrite):
        store.transaction(read_late)
    assert store.get("c", "a") is None


def test_stored_documents_do_not_share_state_with_callers() -> None:
    store = MemoryDocumentStore()
    outputs = [{"index": 0}]
    meta = {"k": "v"}
    store.set("c", "a", {"outputs": outputs, "meta": meta})

    outputs.append({"index": 1})
    meta["k"] = "changed"

    assert store.get("c", "a") == {"outputs": [{"index": 0}], "meta": {"k": "v"}}


def test_values_are_stored_as_firestore_would() -> None:
    store = MemoryDocumentStore()
    naive = dt.datetime(2025, 1, 2, 3, 4, 5)
    store.set("c", "a", {"when": naive, "tags": ("a", "b"), "flag": True})

    got = store.get("c", "a")

    assert got == {"when": naive.replace(tzinfo=dt.UTC), "tags": ["a", "b"], "flag": True}
    with pytest.raises(TypeError):
        store.set("c", "b", {"price": decimal.Decimal("1.5")})
    with pytest.raises(TypeError):
        store.set("c", "b", {"day": dt.date(2025, 1, 1)})
    with pytest.raises(ValueError):
        store.set("c", "bad/id", {})


def test_increment_replaces_a_non_numeric_field_and_keeps_ints_ints() -> None:
    store = MemoryDocumentStore()
    store.set("c", "a", {"n": "text", "i": 1})

    store.increment("c", "a", {"n": 2, "i": 3})

    got = store.get("c", "a")
    assert got == {"n": 2, "i": 4}
    assert got is not None and isinstance(got["i"], int)
