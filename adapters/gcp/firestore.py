"""`DocumentStore` on google-cloud-firestore, for Firestore and its emulator alike.

google-cloud-firestore learns about an emulator only from the `FIRESTORE_EMULATOR_HOST`
environment variable, read in the client's constructor. gpupipe reads the environment only
in `Settings`, so `_client()` below sets the one attribute the library derives from that
variable (`_emulator_host`, google-cloud-firestore 2.x) from the settings value instead:
with it, the library opens its own insecure channel with the emulator's owner token. This is
the only place that knows about it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from adapters.gcp.errors import bounded_retry, translated
from adapters.query_rules import check_query
from core.ports import Document, DocumentStore, Filter, Order, Page, Transaction, TransactionAborted

T = TypeVar("T")

_OPS = {
    "==": "==",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "in": "in",
    "array_contains": "array_contains",
}


def _client(project_id: str, emulator_host: str | None, database: str) -> firestore.Client:
    if emulator_host is None:
        client = firestore.Client(project=project_id, database=database)
    else:
        client = firestore.Client(project=project_id, database=database, credentials=AnonymousCredentials())
    if not hasattr(client, "_emulator_host"):
        raise RuntimeError("google-cloud-firestore no longer has `_emulator_host`; revisit adapters/gcp/firestore.py")
    # Settings, not the environment, decide where the client goes (see the module docstring).
    client._emulator_host = emulator_host.removeprefix("http://") if emulator_host else None
    return client


def _plain(value: Any) -> Any:
    """Library values as the port promises them: plain UTC `datetime`s, dicts and lists."""
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC)
        return dt.datetime(
            utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=dt.UTC
        )
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _nested(paths: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "c": 2} -> {"a": {"b": 1}, "c": 2} (what `set(..., merge=True)` understands)."""
    out: dict[str, Any] = {}
    for dotted, value in paths.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


class FirestoreDocumentStore(DocumentStore):
    """Documents in Firestore (Native mode).

    Every single-document call and query is bounded by `timeout` seconds, retries included.
    Writes that meet a transaction's lock on their document are retried until then (a
    transaction holds its documents' locks until it commits); `create` and `increment` are
    retried only after such an abort, never after an ambiguous failure. Transactions use the
    library's retry on aborted commits, which keeps a retried transaction's place in line; an
    aborted read inside `fn` is retried here too.
    """

    def __init__(
        self,
        project_id: str,
        *,
        emulator_host: str | None = None,
        database: str = "(default)",
        timeout: float = 30.0,
    ) -> None:
        self._project_id = project_id
        self._emulator_host = emulator_host
        self._database = database
        self._timeout = timeout

    @functools.cached_property
    def _db(self) -> firestore.Client:
        return _client(self._project_id, self._emulator_host, self._database)

    def _ref(self, collection: str, doc_id: str) -> Any:
        if not collection or not doc_id or "/" in doc_id:
            raise ValueError(f"invalid document path {collection!r}/{doc_id!r}")
        return self._db.collection(collection).document(doc_id)

    def _retrying(self) -> dict[str, Any]:
        """Idempotent calls: retry transient errors and lock contention."""
        return {"timeout": self._timeout, "retry": bounded_retry(self._timeout, also=(gexc.Aborted,))}

    def _retrying_unapplied(self) -> dict[str, Any]:
        """Non-idempotent calls: retry only what certainly was not applied (an aborted commit)."""
        return {"timeout": self._timeout, "retry": bounded_retry(self._timeout, only=(gexc.Aborted,))}

    # ------------------------------------------------------------------ single documents
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        ref = self._ref(collection, doc_id)
        with translated(f"get {collection}/{doc_id}"):
            snapshot = ref.get(**self._retrying())
        return _plain(snapshot.to_dict()) if snapshot.exists else None

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        ref = self._ref(collection, doc_id)
        with translated(f"create {collection}/{doc_id}"):
            ref.create(dict(data), **self._retrying_unapplied())

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        ref = self._ref(collection, doc_id)
        with translated(f"set {collection}/{doc_id}"):
            ref.set(dict(data), **self._retrying())

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        ref = self._ref(collection, doc_id)
        with translated(f"update {collection}/{doc_id}"):
            ref.update(dict(fields), **self._retrying())

    def delete(self, collection: str, doc_id: str) -> None:
        ref = self._ref(collection, doc_id)
        with translated(f"delete {collection}/{doc_id}"):
            ref.delete(**self._retrying())

    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        for path, delta in deltas.items():
            if isinstance(delta, bool) or not isinstance(delta, int | float):
                raise TypeError(f"increment of {path!r} must be a number, got {delta!r}")
        ref = self._ref(collection, doc_id)
        transforms = _nested({path: firestore.Increment(delta) for path, delta in deltas.items()})
        with translated(f"increment {collection}/{doc_id}"):
            ref.set(transforms, merge=True, **self._retrying_unapplied())

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
        query: Any = self._db.collection(collection)
        for f in where:
            query = query.where(filter=FieldFilter(f.field, _OPS[f.op], f.value))
        for o in order_by:
            query = query.order_by(o.field, direction="DESCENDING" if o.descending else "ASCENDING")
        id_descending = order_by[-1].descending if order_by else False
        query = query.order_by(FieldPath.document_id(), direction="DESCENDING" if id_descending else "ASCENDING")
        if start_after is not None:
            query = query.start_after(list(start_after))  # a list: the library rewrites the id in place
        if limit is not None:
            query = query.limit(limit + 1)  # one more tells whether another page follows
        with translated(f"query {collection}"):
            snapshots = list(query.stream(**self._retrying()))
        more = limit is not None and len(snapshots) > limit
        snapshots = snapshots[:limit] if limit is not None else snapshots
        documents = [Document(s.id, _plain(s.to_dict())) for s in snapshots]
        cursor = None
        if more and documents:
            last = documents[-1]
            cursor = (*(_lookup(last.data, o.field) for o in order_by), last.id)
        return Page(documents=documents, cursor=cursor)

    # ------------------------------------------------------------------ transactions
    def transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        @firestore.transactional
        def run(library_tx: firestore.Transaction) -> T:
            return fn(_FirestoreTransaction(self, library_tx))

        attempts_left = max_attempts
        while True:
            library_tx = self._db.transaction(max_attempts=attempts_left)
            try:
                with translated("transaction"):
                    try:
                        return run(library_tx)  # type: ignore[no-any-return]
                    except ValueError as exc:
                        if isinstance(exc.__cause__, gexc.Aborted):  # the library gave up
                            raise TransactionAborted(
                                f"transaction gave up after {max_attempts} conflicting attempts"
                            ) from exc
                        raise
            except TransactionAborted:
                # An aborted read inside `fn` (lock contention), which the library does not retry.
                attempts_left -= 1
                if attempts_left <= 0:
                    raise


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return node


class _FirestoreTransaction(Transaction):
    def __init__(self, store: FirestoreDocumentStore, library_tx: firestore.Transaction) -> None:
        self._store = store
        self._tx = library_tx

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        ref = self._store._ref(collection, doc_id)
        snapshot = next(iter(self._tx.get(ref, timeout=self._store._timeout)))
        return _plain(snapshot.to_dict()) if snapshot.exists else None

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._tx.create(self._store._ref(collection, doc_id), dict(data))

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._tx.set(self._store._ref(collection, doc_id), dict(data))

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        self._tx.update(self._store._ref(collection, doc_id), dict(fields))

    def delete(self, collection: str, doc_id: str) -> None:
        self._tx.delete(self._store._ref(collection, doc_id))

    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        for path, delta in deltas.items():
            if isinstance(delta, bool) or not isinstance(delta, int | float):
                raise TypeError(f"increment of {path!r} must be a number, got {delta!r}")
        transforms = _nested({path: firestore.Increment(delta) for path, delta in deltas.items()})
        self._tx.set(self._store._ref(collection, doc_id), transforms, merge=True)
