"""Cloud Storage Pub/Sub notifications: what an upload event says (bucket, object, generation,
event type), decoded from a push body, a CloudEvent or a pulled message alike."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FINALIZE = "OBJECT_FINALIZE"


class MalformedNotification(ValueError):
    """The message is not a Cloud Storage notification; retrying cannot help."""


@dataclass(frozen=True)
class StorageNotification:
    """The parts of a Cloud Storage Pub/Sub notification the trigger needs."""

    bucket: str
    name: str
    generation: str
    event_type: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @classmethod
    def from_message(cls, attributes: Mapping[str, str], data: bytes) -> StorageNotification:
        """From a notification message: the attributes (`bucketId`, `objectId`,
        `objectGeneration`, `eventType`) with the JSON object resource in the data as fallback."""
        resource: Mapping[str, Any] = {}
        if data:
            try:
                decoded = json.loads(data)
                resource = decoded if isinstance(decoded, Mapping) else {}
            except (ValueError, UnicodeDecodeError):
                resource = {}
        bucket = attributes.get("bucketId") or resource.get("bucket")
        name = attributes.get("objectId") or resource.get("name")
        generation = attributes.get("objectGeneration") or resource.get("generation")
        event_type = attributes.get("eventType")
        missing = [k for k, v in (("bucketId", bucket), ("objectId", name), ("eventType", event_type)) if not v]
        if missing:
            raise MalformedNotification(f"not a storage notification: missing {', '.join(missing)}")
        if not generation and event_type == FINALIZE:
            raise MalformedNotification("not a storage notification: missing objectGeneration")
        return cls(str(bucket), str(name), str(generation or ""), str(event_type))


def decode_message_data(data: str | bytes | None) -> bytes:
    """Pub/Sub message data as delivered in a push body or CloudEvent (base64 text)."""
    if not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedNotification("message data is not base64") from None
