"""Decoding of Pub/Sub `messagePublished` CloudEvents, as Eventarc delivers them in GCP and as
functions-framework builds them from a raw Pub/Sub push request (the local emulator's push
subscription). Both carry `data = {"message": {"data": <base64>, "attributes": {...},
"messageId": ...}}`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.uploads import decode_message_data

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class NotAPubSubEvent(ValueError):
    """The event does not carry a Pub/Sub message; retrying it cannot help."""


@dataclass(frozen=True)
class PubSubMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    delivery_attempt: int | None


def pubsub_message(event: Any) -> PubSubMessage:
    """The Pub/Sub message inside a CloudEvent (`cloudevents.http.CloudEvent`)."""
    event_type = event["type"]
    if event_type != MESSAGE_PUBLISHED:
        raise NotAPubSubEvent(f"expected a {MESSAGE_PUBLISHED} event, got {event_type!r}")
    data = event.data
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        raise NotAPubSubEvent("the event data holds no Pub/Sub message")
    message = data["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise NotAPubSubEvent("the message attributes are not an object")
    attempt = data.get("deliveryAttempt") or message.get("deliveryAttempt")
    try:
        payload = decode_message_data(message.get("data"))
    except ValueError as exc:
        raise NotAPubSubEvent(str(exc)) from None
    return PubSubMessage(
        message_id=str(message.get("messageId") or message.get("message_id") or event["id"]),
        data=payload,
        attributes={str(k): str(v) for k, v in attributes.items()},
        delivery_attempt=int(attempt) if isinstance(attempt, int | str) and str(attempt).isdigit() else None,
    )
