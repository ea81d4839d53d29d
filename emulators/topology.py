"""topology.yaml as typed objects, and `apply`, which creates it through the ports.

topology.yaml is the one description of gpupipe's buckets, topics, subscriptions and
notifications; Terraform reads the same file with `yamldecode`. Names in it are logical
("jobs-worker"); the concrete names come from `core.settings.Names` (by default
`resource_names(prefix)`, "<prefix>-<logical>"). `load` refuses a file in which any bucket,
topic or subscription has no field in `Names`, so a resource cannot be added on one side only.

`apply` works on any implementation of the ports: the memory fakes in unit tests and the GCP
adapters pointed at the emulators by `python -m emulators up` and the test fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.ports import BlobStore, MessagingAdmin, SubscriptionSpec
from core.settings import Names, resource_names

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "topology.yaml"

Kind = Literal["bucket", "topic", "subscription"]


class TopologyError(ValueError):
    """topology.yaml is malformed or does not match `core.settings.Names`; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bucket(_Strict):
    purpose: str
    versioning: bool = False
    delete_after_days: int | None = Field(default=None, gt=0)


class Topic(_Strict):
    purpose: str


class Subscription(_Strict):
    topic: str
    ack_deadline_seconds: int = Field(ge=10, le=600)
    message_retention_seconds: int = Field(ge=600, le=604800)
    retry_minimum_backoff_seconds: float = Field(ge=0, le=600)
    retry_maximum_backoff_seconds: float = Field(ge=0, le=600)
    dead_letter_topic: str | None = None
    max_delivery_attempts: int | None = Field(default=None, ge=5, le=100)
    delivered_to: str

    @model_validator(mode="after")
    def _dead_letter_needs_attempts(self) -> Subscription:
        if self.dead_letter_topic is not None and self.max_delivery_attempts is None:
            raise ValueError("dead_letter_topic needs max_delivery_attempts")
        if self.retry_minimum_backoff_seconds > self.retry_maximum_backoff_seconds:
            raise ValueError("retry_minimum_backoff_seconds is above retry_maximum_backoff_seconds")
        return self


class Notification(_Strict):
    bucket: str
    topic: str
    event_types: list[Literal["OBJECT_FINALIZE", "OBJECT_DELETE", "OBJECT_METADATA_UPDATE", "OBJECT_ARCHIVE"]]


class Topology(_Strict):
    buckets: dict[str, Bucket]
    topics: dict[str, Topic]
    subscriptions: dict[str, Subscription]
    notifications: dict[str, Notification] = {}

    @model_validator(mode="after")
    def _references_resolve(self) -> Topology:
        problems = []
        for name, sub in self.subscriptions.items():
            if sub.topic not in self.topics:
                problems.append(f"subscription {name!r}: unknown topic {sub.topic!r}")
            if sub.dead_letter_topic is not None and sub.dead_letter_topic not in self.topics:
                problems.append(f"subscription {name!r}: unknown dead_letter_topic {sub.dead_letter_topic!r}")
            if sub.dead_letter_topic == sub.topic:
                problems.append(f"subscription {name!r}: dead-letters into its own topic")
        for name, note in self.notifications.items():
            if note.bucket not in self.buckets:
                problems.append(f"notification {name!r}: unknown bucket {note.bucket!r}")
            if note.topic not in self.topics:
                problems.append(f"notification {name!r}: unknown topic {note.topic!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load(path: Path = DEFAULT_PATH) -> Topology:
    """Read and validate topology.yaml; `TopologyError` names every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"cannot read {path}: {exc}") from None
    try:
        topology = Topology.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise TopologyError(f"{path}: {details}") from None
    unmapped = [f"{kind} {name!r}" for kind, name in _logical_names(topology) if _names_field(kind, name) is None]
    if unmapped:
        raise TopologyError(f"{path}: no field in core.settings.Names (resource_names) for " + ", ".join(unmapped))
    return topology


def concrete_name(names: Names, kind: Kind, logical: str) -> str:
    """The deployed name of a logical resource, e.g. ("subscription", "jobs-worker") -> names.jobs_subscription."""
    field = _names_field(kind, logical)
    if field is None:
        raise TopologyError(f"no field in core.settings.Names for {kind} {logical!r}")
    return str(getattr(names, field))


def apply(
    topology: Topology,
    names: Names,
    blobs: BlobStore,
    admin: MessagingAdmin,
    *,
    push_endpoints: Mapping[str, str] | None = None,
) -> None:
    """Create every bucket, topic and subscription that is missing (idempotent).

    `push_endpoints` maps a subscription's `delivered_to` (e.g. "on_upload") to a push URL;
    the local whole-stack runner uses it to deliver to functions-framework processes.
    Notifications have no port: in GCP Terraform creates them, locally fake-gcs-server is
    started with the matching flags (`upload_notification`)."""
    apply_messaging(topology, names, admin, push_endpoints=push_endpoints)
    apply_buckets(topology, names, blobs)


def apply_buckets(topology: Topology, names: Names, blobs: BlobStore) -> None:
    for logical, bucket in topology.buckets.items():
        blobs.ensure_bucket(concrete_name(names, "bucket", logical), versioning=bucket.versioning)


def apply_messaging(
    topology: Topology,
    names: Names,
    admin: MessagingAdmin,
    *,
    push_endpoints: Mapping[str, str] | None = None,
) -> None:
    for logical in topology.topics:
        admin.ensure_topic(concrete_name(names, "topic", logical))
    for spec in subscription_specs(topology, names, push_endpoints=push_endpoints):
        admin.ensure_subscription(spec)


def subscription_specs(
    topology: Topology, names: Names, *, push_endpoints: Mapping[str, str] | None = None
) -> list[SubscriptionSpec]:
    endpoints = push_endpoints or {}
    specs = []
    for logical, sub in topology.subscriptions.items():
        dead_letter = None if sub.dead_letter_topic is None else concrete_name(names, "topic", sub.dead_letter_topic)
        specs.append(
            SubscriptionSpec(
                name=concrete_name(names, "subscription", logical),
                topic=concrete_name(names, "topic", sub.topic),
                ack_deadline_seconds=sub.ack_deadline_seconds,
                dead_letter_topic=dead_letter,
                max_delivery_attempts=sub.max_delivery_attempts or SubscriptionSpec.max_delivery_attempts,
                retry_minimum_backoff_seconds=sub.retry_minimum_backoff_seconds,
                retry_maximum_backoff_seconds=sub.retry_maximum_backoff_seconds,
                message_retention_seconds=sub.message_retention_seconds,
                push_endpoint=endpoints.get(sub.delivered_to),
            )
        )
    return specs


def upload_notification(topology: Topology, names: Names) -> tuple[str, str, list[str]] | None:
    """(bucket, topic, event types) of the one storage notification fake-gcs-server can emulate.

    fake-gcs-server publishes to a single topic, so the local suite supports at most one."""
    if not topology.notifications:
        return None
    if len(topology.notifications) > 1:
        raise TopologyError("the local suite (fake-gcs-server) can emulate only one storage notification")
    (note,) = topology.notifications.values()
    return (
        concrete_name(names, "bucket", note.bucket),
        concrete_name(names, "topic", note.topic),
        list(note.event_types),
    )


def _logical_names(topology: Topology) -> list[tuple[Kind, str]]:
    return (
        [("bucket", name) for name in topology.buckets]
        + [("topic", name) for name in topology.topics]
        + [("subscription", name) for name in topology.subscriptions]
    )


def _names_field(kind: Kind, logical: str) -> str | None:
    """The `Names` field for a logical name: the one `resource_names` builds as "<prefix>-<logical>"."""
    probe = "p"
    for field, value in resource_names(probe).items():
        if field.endswith(f"_{kind}") and value == f"{probe}-{logical}":
            return field
    return None
