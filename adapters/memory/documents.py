"""An in-process `DocumentStore` with Firestore's semantics.

Values are normalized on the way in the way Firestore stores them (tuples and sets become lists,
datetimes become UTC-aware, str and int subclasses such as enums become plain values, other
types are refused) and copied on the way out, so no caller can change a stored document by
mutating what it passed or got back. Transactions are optimistic: `fn` runs without a lock,
every document it read is checked at commit, and a changed one makes the store run `fn` again.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from adapters.query_rules import check_query
from core.ports import (
    AlreadyExists,
    Document,
    DocumentStore,
    Filter,
    NotFound,
    Order,
    Page,
    TransactionAborted,
)
from core.ports import Transaction as TransactionPort

T = TypeVar("T")
Key = tuple[str, str]

_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


class ReadAfterWrite(RuntimeError):
    """A transaction read after it wrote; Firestore forbids that, so the fake does too."""


class _Conflict(Exception):
    """A document a transaction read changed before it committed."""


def normalize(value: Any) -> Any:
    """A deep copy of `value` as Firestore would store and return it; `TypeError` for values it cannot hold."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC)
    if isinstance(value, list | tuple | set | frozenset):
        return [normalize(v) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"document keys must be strings, got {k!r}")
            out[str(k)] = normalize(v)
        return out
    raise TypeError(f"a document cannot hold a {type(value).__name__} ({value!r})")


def _check_id(collection: str, doc_id: str) -> Key:
    if not collection or not doc_id or "/" in doc_id:
        raise ValueError(f"invalid document path {collection!r}/{doc_id!r}")
    return (collection, doc_id)


def _get_path(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _apply_fields(data: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    updated = normalize(data)
    for path, value in fields.items():
        _set_path(updated, path, normalize(value))
    return updated


def _apply_increments(data: dict[str, Any] | None, deltas: Mapping[str, int | float]) -> dict[str, Any]:
    updated = normalize(data or {})
    for path, delta in deltas.items():
        if isinstance(delta, bool) or not isinstance(delta, int | float):
            raise TypeError(f"increment of {path!r} must be a number, got {delta!r}")
        current = _get_path(updated, path)
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        _set_path(updated, path, normalize(base + delta))
    return updated


# Firestore orders values of different types by type first.
def _type_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 2
    if isinstance(value, dt.datetime):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, bytes):
        return 5
    if isinstance(value, list):
        return 8
    return 9


def compare_values(a: Any, b: Any) -> int:
    ra, rb = _type_rank(a), _type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 8:
        for x, y in zip(a, b, strict=False):
            c = compare_values(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 9:
        return compare_values(sorted(a.items()), sorted(b.items()))
    if a is None:
        return 0
    return (a > b) - (a < b)


def _matches(data: Mapping[str, Any], flt: Filter) -> bool:
    value = _get_path(data, flt.field)
    if value is _MISSING:
        return False
    target = normalize(flt.value) if flt.op not in ("in",) else [normalize(v) for v in flt.value]
    if flt.op == "==":
        return _type_rank(value) == _type_rank(target) and compare_values(value, target) == 0
    if flt.op == "!=":
        return value is not None and compare_values(value, target) != 0
    if flt.op == "in":
        return any(_type_rank(value) == _type_rank(t) and compare_values(value, t) == 0 for t in target)
    if flt.op == "array_contains":
        return isinstance(value, list) and any(compare_values(v, target) == 0 for v in value)
    if _type_rank(value) != _type_rank(target):
        return False
    c = compare_values(value, target)
    return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[flt.op]


class MemoryDocumentStore(DocumentStore):
    def __init__(self, *, retry_backoff_seconds: float = 0.002) -> None:
        self._lock = threading.Lock()
        self._docs: dict[Key, dict[str, Any]] = {}
        # Bumped on every write of a key, deletes included, so a transaction that read
        # "absent" also notices a document that appeared and vanished again.
        self._versions: dict[Key, int] = {}
        self._clock = itertools.count(1)
        self._retry_backoff_seconds = retry_backoff_seconds

    # ------------------------------------------------------------------ single documents
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self._read(_check_id(collection, doc_id))[0]

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._commit({}, [("create", _check_id(collection, doc_id), normalize(data))])

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._commit({}, [("set", _check_id(collection, doc_id), normalize(data))])

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        self._commit({}, [("update", _check_id(collection, doc_id), dict(fields))])

    def delete(self, collection: str, doc_id: str) -> None:
        self._commit({}, [("delete", _check_id(collection, doc_id), None)])

    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        self._commit({}, [("increment", _check_id(collection, doc_id), dict(deltas))])

    # ------------------------------------------------------------------ queries
    def query(
        self,
        collection: str,
        *,
        where: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        start_after: tuple[Any, ...] | None = None,
    ) -> Page:
        check_query(where, order_by, limit, start_after)
        with self._lock:
            candidates = [(key[1], normalize(data)) for key, data in self._docs.items() if key[0] == collection]
        rows: list[tuple[tuple[Any, ...], Document]] = []
        for doc_id, data in candidates:
            if not all(_matches(data, f) for f in where):
                continue
            values = tuple(_get_path(data, o.field) for o in order_by)
            if any(v is _MISSING for v in values):
                continue  # Firestore leaves out documents that lack an order field
            rows.append(((*values, doc_id), Document(doc_id, data)))
        directions = [o.descending for o in order_by]
        directions.append(order_by[-1].descending if order_by else False)

        def compare_keys(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
            for x, y, descending in zip(a, b, directions, strict=True):
                c = compare_values(x, y)
                if c:
                    return -c if descending else c
            return 0

        def compare_rows(r1: tuple[tuple[Any, ...], Document], r2: tuple[tuple[Any, ...], Document]) -> int:
            return compare_keys(r1[0], r2[0])

        rows.sort(key=functools.cmp_to_key(compare_rows))
        if start_after is not None:
            cursor = tuple(normalize(list(start_after)))
            rows = [r for r in rows if compare_keys(r[0], cursor) > 0]
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        next_cursor = rows[-1][0] if more and rows else None
        return Page(documents=[doc for _, doc in rows], cursor=next_cursor)

    # ------------------------------------------------------------------ transactions
    def transaction(self, fn: Callable[[TransactionPort], T], *, max_attempts: int = 5) -> T:
        for attempt in range(1, max_attempts + 1):
            tx = _MemoryTransaction(self)
            result = fn(tx)
            try:
                self._commit(tx.read_versions, tx.writes)
            except _Conflict:
                # Jittered backoff so two contenders do not collide again in lock step.
                time.sleep(random.uniform(0, self._retry_backoff_seconds * attempt))
                continue
            return result
        raise TransactionAborted(f"transaction gave up after {max_attempts} conflicting attempts")

    # ------------------------------------------------------------------ internals
    def _read(self, key: Key) -> tuple[dict[str, Any] | None, int]:
        with self._lock:
            data = self._docs.get(key)
            return (normalize(data) if data is not None else None), self._versions.get(key, 0)

    def _commit(self, read_versions: Mapping[Key, int], writes: Sequence[tuple[str, Key, Any]]) -> None:
        """Check the reads, then apply every write or none of them."""
        with self._lock:
            for key, version in read_versions.items():
                if self._versions.get(key, 0) != version:
                    raise _Conflict(key)
            staged: dict[Key, dict[str, Any] | None] = {}
            for op, key, payload in writes:
                current = staged[key] if key in staged else self._docs.get(key)
                path = f"{key[0]}/{key[1]}"
                if op == "create":
                    if current is not None:
                        raise AlreadyExists(f"document {path} already exists")
                    staged[key] = payload
                elif op == "set":
                    staged[key] = payload
                elif op == "update":
                    if current is None:
                        raise NotFound(f"document {path} not found")
                    staged[key] = _apply_fields(current, payload)
                elif op == "increment":
                    staged[key] = _apply_increments(current, payload)
                elif op == "delete":
                    staged[key] = None
                else:  # pragma: no cover - internal misuse
                    raise AssertionError(op)
            for key, data in staged.items():
                if data is None:
                    self._docs.pop(key, None)
                else:
                    self._docs[key] = data
                self._versions[key] = next(self._clock)


class _MemoryTransaction(TransactionPort):
    def __init__(self, store: MemoryDocumentStore) -> None:
        self._store = store
        self.read_versions: dict[Key, int] = {}
        self.writes: list[tuple[str, Key, Any]] = []

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        if self.writes:
            raise ReadAfterWrite("a transaction must do all its reads before its first write")
        key = _check_id(collection, doc_id)
        data, version = self._store._read(key)
        self.read_versions.setdefault(key, version)
        return data

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self.writes.append(("create", _check_id(collection, doc_id), normalize(data)))

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self.writes.append(("set", _check_id(collection, doc_id), normalize(data)))

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        self.writes.append(("update", _check_id(collection, doc_id), normalize(dict(fields))))

    def delete(self, collection: str, doc_id: str) -> None:
        self.writes.append(("delete", _check_id(collection, doc_id), None))

    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        self.writes.append(("increment", _check_id(collection, doc_id), dict(deltas)))
