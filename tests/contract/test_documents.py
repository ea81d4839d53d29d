"""DocumentStore contract: the memory fake, the Firestore emulator and Firestore."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from core.ports import AlreadyExists, Filter, NotFound, Order, Transaction
from tests.contract.conftest import ContractBackend


def test_crud_round_trip(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    when = dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    docs.create(col, "a", {"n": 1, "tags": ("x", "y"), "when": when, "nested": {"k": "v"}, "none": None})

    got = docs.get(col, "a")
    assert got == {"n": 1, "tags": ["x", "y"], "when": when, "nested": {"k": "v"}, "none": None}
    assert got is not None and got["when"].utcoffset() == dt.timedelta(0)  # UTC-aware on the way out

    got["n"] = 99  # a copy: the stored document does not change
    docs.update(col, "a", {"nested.extra": 2, "n": 2})
    assert docs.get(col, "a") == {
        "n": 2,
        "tags": ["x", "y"],
        "when": when,
        "nested": {"k": "v", "extra": 2},
        "none": None,
    }

    docs.set(col, "a", {"replaced": True})
    assert docs.get(col, "a") == {"replaced": True}
    docs.delete(col, "a")
    docs.delete(col, "a")
    assert docs.get(col, "a") is None


def test_create_is_create_only_and_update_needs_the_document(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    docs.create(col, "job", {"status": "queued"})

    with pytest.raises(AlreadyExists):
        docs.create(col, "job", {"status": "running"})
    with pytest.raises(NotFound):
        docs.update(col, "missing", {"status": "running"})

    assert docs.get(col, "job") == {"status": "queued"}
    assert docs.get(col, "missing") is None


def _seed(backend: ContractBackend, col: str) -> list[dict[str, Any]]:
    rows = [{"user": "u1" if i % 3 else "u2", "rank": i % 4, "n": i, "tags": [f"t{i % 2}"]} for i in range(11)]
    for i, row in enumerate(rows):
        backend.documents.set(col, f"doc{i:02d}", row)
    return rows


def test_query_filters_orders_and_pages(backend: ContractBackend) -> None:
    col = backend.collection()
    rows = _seed(backend, col)
    where = [Filter("user", "==", "u1")]
    order = [Order("rank", descending=True)]

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = backend.documents.query(col, where=where, order_by=order, limit=3, start_after=cursor)
        pages.append([d.id for d in page.documents])
        if page.cursor is None:
            break
        cursor = page.cursor

    # by rank descending, ties by id descending (the direction of the last order)
    expected = sorted(
        (f"doc{i:02d}" for i, r in enumerate(rows) if r["user"] == "u1"),
        key=lambda doc_id: (rows[int(doc_id[3:])]["rank"], doc_id),
        reverse=True,
    )
    assert [doc_id for page_ids in pages for doc_id in page_ids] == expected
    assert [len(p) for p in pages] == [3, 3, 1]


def test_query_without_order_pages_by_id(backend: ContractBackend) -> None:
    col = backend.collection()
    _seed(backend, col)

    ids = [d.id for d in backend.documents.iterate(col, page_size=4)]

    assert ids == [f"doc{i:02d}" for i in range(11)]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter("n", ">=", 8), [8, 9, 10]),
        (Filter("n", "<", 2), [0, 1]),
        (Filter("rank", "in", [0, 3]), [0, 3, 4, 7, 8]),
        (Filter("tags", "array_contains", "t1"), [1, 3, 5, 7, 9]),
        (Filter("user", "!=", "u1"), [0, 3, 6, 9]),
    ],
    ids=[">=", "<", "in", "array_contains", "!="],
)
def test_query_operators(backend: ContractBackend, flt: Filter, expected: list[int]) -> None:
    col = backend.collection()
    _seed(backend, col)
    # Firestore orders by every inequality field, so the port asks for them in order_by.
    order = [Order("user")] if flt.field == "user" else []

    page = backend.documents.query(col, where=[flt, Filter("n", "<=", 10)], order_by=[*order, Order("n")])

    assert [d.data["n"] for d in page.documents] == expected
    assert page.cursor is None


def test_query_refuses_an_inequality_outside_the_ordering(backend: ContractBackend) -> None:
    col = backend.collection()

    with pytest.raises(ValueError, match="order_by"):
        backend.documents.query(col, where=[Filter("n", ">", 1)], order_by=[Order("rank")])


def test_query_order_skips_documents_without_the_field(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    docs.set(col, "with", {"created_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)})
    docs.set(col, "without", {"other": 1})

    page = docs.query(col, order_by=[Order("created_at", descending=True)])

    assert [d.id for d in page.documents] == ["with"]


def test_increments_are_atomic_under_concurrency(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    threads, per_thread = 3, 5

    def bump() -> None:
        for _ in range(per_thread):
            docs.increment(col, "usage", {"jobs": 1, "gpu.seconds": 0.5})

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    assert docs.get(col, "usage") == {"jobs": threads * per_thread, "gpu": {"seconds": threads * per_thread * 0.5}}


def test_transaction_increments_are_blind_writes_that_add_up(backend: ContractBackend) -> None:
    """Transactions that only increment a document (the ledger's quota and batch counters) commit
    together with their other writes and never lose an addition to each other."""
    docs, col = backend.documents, backend.collection()
    docs.set(col, "quota", {"active_jobs": 4, "day": "2026-11-21"})
    start = threading.Barrier(4)

    def finish(n: int) -> None:
        start.wait(timeout=10)

        def run(tx: Transaction) -> None:
            tx.get(col, f"job-{n}")  # each reads only its own document
            tx.set(col, f"job-{n}", {"done": True})
            tx.increment(col, "quota", {"active_jobs": -1, "released": 1})

        docs.transaction(run)

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert docs.get(col, "quota") == {"active_jobs": 0, "day": "2026-11-21", "released": 4}
    assert all(docs.get(col, f"job-{n}") == {"done": True} for n in range(4))


def test_transactions_do_not_lose_concurrent_updates(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    docs.set(col, "counter", {"n": 0})
    runs: list[int] = []
    both_read = threading.Barrier(2)
    held_apart: list[bool] = []

    def add_one(tx: Transaction) -> int:
        runs.append(1)
        current = tx.get(col, "counter")
        assert current is not None
        if len(runs) <= 2:
            # Let both first attempts read before either writes. Pessimistic backends (the
            # Firestore emulator) hold the second reader, so the barrier may time out there.
            try:
                both_read.wait(timeout=1.0)
            except threading.BrokenBarrierError:
                held_apart.append(True)
        tx.set(col, "counter", {"n": current["n"] + 1})
        return int(current["n"])

    seen: list[int] = []
    workers = [threading.Thread(target=lambda: seen.append(docs.transaction(add_one))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    assert docs.get(col, "counter") == {"n": 2}
    assert sorted(seen) == [0, 1]  # each committed attempt saw the other's write or none
    if not held_apart:
        assert len(runs) >= 3  # both first attempts read 0, so one of them had to run again


def test_transaction_create_conflict_commits_nothing(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()
    docs.create(col, "usage-1", {"images": 1})

    def record(tx: Transaction) -> None:
        tx.get(col, "job-1")
        tx.set(col, "job-1", {"status": "succeeded"})
        tx.create(col, "usage-1", {"images": 2})

    with pytest.raises(AlreadyExists):
        docs.transaction(record)

    assert docs.get(col, "job-1") is None
    assert docs.get(col, "usage-1") == {"images": 1}


def test_transaction_passes_on_errors_from_fn_without_writing(backend: ContractBackend) -> None:
    docs, col = backend.documents, backend.collection()

    class Refused(Exception):
        pass

    def refuse(tx: Transaction) -> None:
        tx.get(col, "a")
        tx.set(col, "a", {"written": True})
        raise Refused

    started = time.monotonic()
    with pytest.raises(Refused):
        docs.transaction(refuse)

    assert docs.get(col, "a") is None
    assert time.monotonic() - started < 10
