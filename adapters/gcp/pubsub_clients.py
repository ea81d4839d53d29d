"""The google-cloud-pubsub clients for one project and endpoint, built on first use.

With `emulator_host` set, every client talks plain gRPC to that host (the client libraries'
own `PUBSUB_EMULATOR_HOST` handling is bypassed by handing them a ready insecure transport,
so the settings value alone decides); without it they reach Pub/Sub with the application
default credentials.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from adapters.gcp.errors import bounded_retry

# Callback threads of one pull at most.
MAX_CALLBACK_THREADS = 64


class PubSubClients:
    """Builds the library clients on first use, for one project and endpoint."""

    def __init__(self, project_id: str, emulator_host: str | None, timeout: float) -> None:
        self.project_id = project_id
        self.emulator_host = emulator_host.removeprefix("http://") if emulator_host else None
        self.timeout = timeout

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project_id}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project_id}/subscriptions/{subscription}"

    @functools.cached_property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self.emulator_host is None:
            return pubsub_v1.PublisherClient()
        channel = grpc.insecure_channel(self.emulator_host)
        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))

    @functools.cached_property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self.emulator_host is None:
            return pubsub_v1.SubscriberClient()
        channel = grpc.insecure_channel(self.emulator_host)
        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))

    def call_options(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "retry": bounded_retry(self.timeout)}


# --------------------------------------------------------------------------- admin


def utc(value: dt.datetime) -> dt.datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC)
