"""`Publisher`, `Subscriber` and `MessagingAdmin` on google-cloud-pubsub.

With `emulator_host` set, every client talks plain gRPC to that host (the client libraries'
own `PUBSUB_EMULATOR_HOST` handling is bypassed by handing them a ready insecure transport,
so the settings value alone decides); without it they reach Pub/Sub with the application
default credentials.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler
from google.pubsub_v1.types import DeadLetterPolicy, PushConfig, RetryPolicy, Subscription

from adapters.gcp.errors import bounded_retry, translated
from adapters.gcp.polling_pull import PollingPull, PulledMessage
from adapters.gcp.pubsub_clients import MAX_CALLBACK_THREADS, PubSubClients
from adapters.gcp.streaming_pull import LibraryStream
from core.ports import (
    MessagingAdmin,
    Publisher,
    ReceivedMessage,
    StreamingPull,
    Subscriber,
    SubscriptionSpec,
)

log = logging.getLogger(__name__)


class PubSubAdmin(MessagingAdmin):
    def __init__(self, project_id: str, *, emulator_host: str | None = None, timeout: float = 30.0) -> None:
        self._c = PubSubClients(project_id, emulator_host, timeout)

    def ensure_topic(self, topic: str) -> None:
        with translated(f"create topic {topic}"):
            try:
                self._c.publisher.create_topic(name=self._c.topic_path(topic), **self._c.call_options())
            except gexc.AlreadyExists:
                pass

    def ensure_subscription(self, spec: SubscriptionSpec) -> None:
        """Create the subscription; an existing one is left as it is (Terraform owns changes in GCP).

        A dead-letter policy in GCP also needs the Pub/Sub service agent to be allowed to
        publish to the dead-letter topic and subscribe here (granted in Terraform)."""
        subscription = Subscription(
            name=self._c.subscription_path(spec.name),
            topic=self._c.topic_path(spec.topic),
            ack_deadline_seconds=spec.ack_deadline_seconds,
            message_retention_duration=dt.timedelta(seconds=spec.message_retention_seconds),
            retry_policy=RetryPolicy(
                minimum_backoff=dt.timedelta(seconds=spec.retry_minimum_backoff_seconds),
                maximum_backoff=dt.timedelta(seconds=spec.retry_maximum_backoff_seconds),
            ),
        )
        if spec.dead_letter_topic is not None:
            subscription.dead_letter_policy = DeadLetterPolicy(
                dead_letter_topic=self._c.topic_path(spec.dead_letter_topic),
                max_delivery_attempts=spec.max_delivery_attempts,
            )
        if spec.push_endpoint is not None:
            subscription.push_config = PushConfig(push_endpoint=spec.push_endpoint)
        with translated(f"create subscription {spec.name}"):
            try:
                self._c.subscriber.create_subscription(request=subscription, **self._c.call_options())
            except gexc.AlreadyExists:
                pass

    def delete_subscription(self, name: str) -> None:
        with translated(f"delete subscription {name}"):
            try:
                self._c.subscriber.delete_subscription(
                    subscription=self._c.subscription_path(name), **self._c.call_options()
                )
            except gexc.NotFound:
                pass

    def delete_topic(self, topic: str) -> None:
        """Not part of the port: for tests that clean up what they created."""
        with translated(f"delete topic {topic}"):
            try:
                self._c.publisher.delete_topic(topic=self._c.topic_path(topic), **self._c.call_options())
            except gexc.NotFound:
                pass


# --------------------------------------------------------------------------- publish


class PubSubPublisher(Publisher):
    def __init__(self, project_id: str, *, emulator_host: str | None = None, timeout: float = 30.0) -> None:
        self._c = PubSubClients(project_id, emulator_host, timeout)

    def publish(
        self,
        topic: str,
        data: bytes,
        attributes: Mapping[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> str:
        with translated(f"publish to {topic}"):
            future = self._c.publisher.publish(
                self._c.topic_path(topic),
                data,
                retry=bounded_retry(timeout),
                timeout=timeout,
                **dict(attributes or {}),
            )
            return str(future.result(timeout=timeout))


# --------------------------------------------------------------------------- subscribe


class PubSubSubscriber(Subscriber):
    def __init__(
        self,
        project_id: str,
        *,
        emulator_host: str | None = None,
        timeout: float = 30.0,
        pull_mode: str = "unary",
        poll_seconds: float = 5.0,
    ) -> None:
        """`pull_mode` is `unary` (the default: a polling loop of unary Pulls, see `PollingPull`)
        or `streaming` (the library's StreamingPull)."""
        if pull_mode not in ("unary", "streaming"):
            raise ValueError(f"pull_mode must be unary or streaming, got {pull_mode!r}")
        self._c = PubSubClients(project_id, emulator_host, timeout)
        self._pull_mode = pull_mode
        self._poll_seconds = poll_seconds

    def subscribe(
        self,
        subscription: str,
        callback: Callable[[ReceivedMessage], None],
        *,
        max_messages: int = 10,
        max_lease_seconds: int = 3600,
        lease_extension_seconds: int | None = None,
    ) -> StreamingPull:
        """Callbacks run on a pool of up to `min(max_messages, 64)` threads; a callback that
        raises is logged and its message nacked (the library's behaviour)."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if self._pull_mode == "unary":
            polling = PollingPull(
                self._c,
                subscription,
                callback,
                max_messages=max_messages,
                max_lease_seconds=max_lease_seconds,
                lease_extension_seconds=lease_extension_seconds,
                poll_seconds=self._poll_seconds,
            )
            polling.start()
            return polling

        stream = LibraryStream(self._c, subscription, callback)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(max_messages, MAX_CALLBACK_THREADS), thread_name_prefix=f"pubsub-{subscription}"
        )
        with translated(f"subscribe to {subscription}"):
            future = self._c.subscriber.subscribe(
                self._c.subscription_path(subscription),
                callback=stream.deliver,
                flow_control=pubsub_v1.types.FlowControl(
                    max_messages=max_messages,
                    max_lease_duration=max_lease_seconds,
                    # Also bounds the stream's ack deadline, which is what a crashed subscriber's
                    # messages wait out before redelivery.
                    max_duration_per_lease_extension=lease_extension_seconds or 0,
                ),
                scheduler=ThreadScheduler(executor=executor),
            )
        stream.start(future)
        return stream

    def pull(self, subscription: str, max_messages: int = 10, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        path = self._c.subscription_path(subscription)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            with translated(f"pull from {subscription}"):
                try:
                    response = self._c.subscriber.pull(
                        subscription=path, max_messages=max_messages, timeout=remaining, retry=None
                    )
                except gexc.DeadlineExceeded:
                    return []  # nothing arrived within the timeout
            if response.received_messages:
                return [PulledMessage(self._c, path, r) for r in response.received_messages]
        return []
