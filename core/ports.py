"""The ports gpupipe's core and entry points depend on. They belong to the core: `core` imports
nothing from `adapters`, and the adapters implement these (entry points -> core -> ports <- adapters).

Each port has one GCP implementation (`adapters.gcp`, which also serves the emulators) and one
in-memory fake (`adapters.memory`). Both pass the same contract suite
(`tests/contract`), so code written against a port behaves the same on either.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")


# --------------------------------------------------------------------------- errors
class AdapterError(Exception):
    """Base of every error a port raises."""


class BackendUnavailable(AdapterError):
    """The backend could not be reached or timed out; the caller may retry later."""


class NotFound(AdapterError):
    """The blob or document does not exist."""


class AlreadyExists(AdapterError):
    """A create-only write found the blob or document already there."""


class PreconditionFailed(AdapterError):
    """A generation or update precondition did not hold."""


class TransactionAborted(AdapterError):
    """A transaction kept conflicting with concurrent writers and gave up."""


# --------------------------------------------------------------------------- blobs
@dataclass(frozen=True)
class BlobInfo:
    bucket: str
    name: str
    size: int
    generation: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class BlobStore(abc.ABC):
    """Object storage (Cloud Storage)."""

    @abc.abstractmethod
    def ensure_bucket(self, bucket: str, *, versioning: bool = False) -> None:
        """Create the bucket if it does not exist (bootstrap and tests)."""

    @abc.abstractmethod
    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        if_generation_match: int | None = None,
    ) -> BlobInfo:
        """Write an object. `if_generation_match=0` makes it create-only: `AlreadyExists` when
        the object is there; another number must equal the live generation or the write raises
        `PreconditionFailed`."""

    def create(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Create-only write; `AlreadyExists` if the object exists."""
        return self.write(bucket, name, data, content_type=content_type, metadata=metadata, if_generation_match=0)

    @abc.abstractmethod
    def read(self, bucket: str, name: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; `NotFound` if absent. With `max_bytes`, read at most that many."""

    @abc.abstractmethod
    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        """The object's metadata, or None when absent."""

    @abc.abstractmethod
    def list(self, bucket: str, prefix: str = "") -> list[BlobInfo]:
        """Objects whose names start with `prefix`, sorted by name."""

    @abc.abstractmethod
    def delete(self, bucket: str, name: str) -> None:
        """Delete the object; deleting an absent object is not an error."""

    @abc.abstractmethod
    def url(self, bucket: str, name: str, *, ttl_seconds: int = 3600) -> str:
        """A URL a client can fetch the object from (a signed URL on GCS)."""


# --------------------------------------------------------------------------- messaging
@dataclass(frozen=True)
class SubscriptionSpec:
    """What bootstrap needs to create a subscription (a row of topology.yaml, with real names)."""

    name: str
    topic: str
    ack_deadline_seconds: int = 60
    dead_letter_topic: str | None = None
    max_delivery_attempts: int = 5
    retry_minimum_backoff_seconds: float = 10
    retry_maximum_backoff_seconds: float = 600
    message_retention_seconds: int = 604800
    push_endpoint: str | None = None


class MessagingAdmin(abc.ABC):
    """Creates topics and subscriptions (bootstrap, tests)."""

    @abc.abstractmethod
    def ensure_topic(self, topic: str) -> None: ...

    @abc.abstractmethod
    def ensure_subscription(self, spec: SubscriptionSpec) -> None: ...

    @abc.abstractmethod
    def delete_subscription(self, name: str) -> None: ...


class Publisher(abc.ABC):
    @abc.abstractmethod
    def publish(
        self,
        topic: str,
        data: bytes,
        attributes: Mapping[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> str:
        """Publish one message and wait (bounded by `timeout`) until the backend has it.

        Returns the message id; raises `BackendUnavailable` if it could not be published."""


class ReceivedMessage(abc.ABC):
    """A message handed to a subscriber callback; settle it exactly once with ack or nack."""

    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    publish_time: dt.datetime
    delivery_attempt: int
    """1 on the first delivery; counts only on subscriptions with a dead-letter policy."""

    @abc.abstractmethod
    def ack(self) -> None: ...

    @abc.abstractmethod
    def nack(self) -> None:
        """Give the message back for redelivery (after the subscription's retry backoff)."""

    @abc.abstractmethod
    def modify_ack_deadline(self, seconds: int) -> None:
        """Extend (or, with 0, end) this message's lease."""


class StreamingPull(abc.ABC):
    """A running streaming pull; messages arrive on the subscriber's own threads."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop receiving; messages not yet settled go back to the subscription."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Block until the stream ends (cancelled or failed); re-raise a stream failure."""

    def healthy(self) -> bool:
        """False while the pull cannot reach the backend (its recent attempts all failed)."""
        return True


class Subscriber(abc.ABC):
    @abc.abstractmethod
    def subscribe(
        self,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        *,
        max_messages: int = 10,
        max_lease_seconds: int = 3600,
        lease_extension_seconds: int | None = None,
    ) -> StreamingPull:
        """Start a streaming pull. At most `max_messages` are outstanding (flow control);
        leases of outstanding messages are extended for up to `max_lease_seconds`, at most
        `lease_extension_seconds` at a time when given, so the messages of a subscriber that dies
        go back to the subscription within about that long."""

    @abc.abstractmethod
    def pull(self, subscription: str, max_messages: int = 10, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Synchronously pull what is available within `timeout` (tests and tools)."""


# --------------------------------------------------------------------------- documents
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "array_contains"]


@dataclass(frozen=True)
class Filter:
    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool = False


@dataclass(frozen=True)
class Document:
    id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Page:
    documents: list[Document]
    cursor: tuple[Any, ...] | None
    """Pass as `start_after` to get the next page; None when this was the last page."""


class Transaction(abc.ABC):
    """Reads first, then writes; the store retries the whole function on conflict."""

    @abc.abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create-only; the commit fails with `AlreadyExists` if the document appeared."""

    @abc.abstractmethod
    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Update top-level fields (dotted paths reach into maps); the document must exist."""

    @abc.abstractmethod
    def delete(self, collection: str, doc_id: str) -> None: ...

    @abc.abstractmethod
    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        """Atomically add to numeric fields at commit, creating the document and fields as needed.
        A blind write: it needs no read of the document, so concurrent transactions that only
        increment the same counters do not conflict over it."""


class DocumentStore(abc.ABC):
    """Firestore-shaped document storage. Datetimes come back as UTC-aware `datetime`."""

    @abc.abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create-only; `AlreadyExists` if the id is taken."""

    @abc.abstractmethod
    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace the whole document."""

    @abc.abstractmethod
    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Update fields (dotted paths reach into maps); `NotFound` if absent."""

    @abc.abstractmethod
    def delete(self, collection: str, doc_id: str) -> None: ...

    @abc.abstractmethod
    def increment(self, collection: str, doc_id: str, deltas: Mapping[str, int | float]) -> None:
        """Atomically add to numeric fields, creating the document and fields as needed."""

    @abc.abstractmethod
    def query(
        self,
        collection: str,
        *,
        where: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        start_after: tuple[Any, ...] | None = None,
    ) -> Page:
        """Documents matching every filter, ordered by `order_by` then by id (same direction as
        the last order). `start_after` is a previous page's cursor. A field with an inequality
        filter (`<`, `<=`, `>`, `>=`, `!=`) must be in `order_by` (Firestore orders by it), else
        `ValueError`."""

    @abc.abstractmethod
    def transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        """Run `fn` in a transaction, retrying it on contention; `TransactionAborted` after
        `max_attempts`. `fn` may run more than once: it must have no other side effects."""

    def iterate(self, collection: str, *, where: Sequence[Filter] = (), page_size: int = 300) -> Iterator[Document]:
        """Every matching document, page by page (ordered by id)."""
        cursor: tuple[Any, ...] | None = None
        while True:
            page = self.query(collection, where=where, limit=page_size, start_after=cursor)
            yield from page.documents
            if page.cursor is None:
                return
            cursor = page.cursor


# --------------------------------------------------------------------------- GPU worker capacity
class BacklogReader(abc.ABC):
    """How many messages wait on a subscription (Cloud Monitoring's num_undelivered_messages in GCP)."""

    @abc.abstractmethod
    def undelivered_messages(self, subscription: str) -> int:
        """Messages not yet acknowledged (waiting or leased) on `subscription`; 0 when the metric
        has no recent point. Raises `BackendUnavailable` when it cannot be read."""


class WorkerJobRunner(abc.ABC):
    """Starts GPU workers as executions of a batch job (a Cloud Run job in GCP)."""

    @abc.abstractmethod
    def running_workers(self) -> int:
        """Workers started and not finished yet: pending or running tasks of unfinished executions."""

    @abc.abstractmethod
    def start_workers(self, count: int) -> str:
        """Start `count` more workers (one execution with `count` tasks); return the operation's name."""


# --------------------------------------------------------------------------- webhooks
class WebhookSender(abc.ABC):
    """Delivers a job's webhook (an HTTPS POST of JSON to the URL the user gave)."""

    @abc.abstractmethod
    def deliver(self, url: str, payload: Mapping[str, Any]) -> None:
        """POST `payload` as JSON, retrying a bounded number of times; raise `BackendUnavailable`
        when the receiver never answered 2xx."""
