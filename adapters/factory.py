"""The one wiring point: build the adapters a deployable needs from its settings.

`bootstrap(settings)` returns a `Backends` whose clients are built on first use and then
cached, so a warm function instance reuses them. Nothing is built at import time. Pass
overrides (`bootstrap(settings, documents=fake)`) to swap single adapters in tests.
"""

from __future__ import annotations

import functools
from typing import Any

from core.ports import BlobStore, DocumentStore, MessagingAdmin, Publisher, Subscriber, WebhookSender
from core.settings import Settings


class Backends:
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self._overrides = overrides

    def _pick(self, name: str, build: Any) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return build()

    @functools.cached_property
    def _memory(self) -> Any:
        from adapters.memory import MemoryBackends

        return MemoryBackends()

    @functools.cached_property
    def blobs(self) -> BlobStore:
        def build() -> BlobStore:
            if self.settings.backend == "memory":
                return self._memory.blobs
            from adapters.gcp.storage import GcsBlobStore

            # Against fake-gcs-server, URLs are the emulator's unsigned download links.
            return GcsBlobStore(
                self.settings.project_id,
                endpoint=self.settings.storage_emulator_host,
                public_url=self.settings.public_storage_url or self.settings.storage_emulator_host,
            )

        return self._pick("blobs", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def documents(self) -> DocumentStore:
        def build() -> DocumentStore:
            if self.settings.backend == "memory":
                return self._memory.documents
            from adapters.gcp.firestore import FirestoreDocumentStore

            return FirestoreDocumentStore(self.settings.project_id, emulator_host=self.settings.firestore_emulator_host)

        return self._pick("documents", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def publisher(self) -> Publisher:
        def build() -> Publisher:
            if self.settings.backend == "memory":
                return self._memory.pubsub
            from adapters.gcp.pubsub import PubSubPublisher

            return PubSubPublisher(self.settings.project_id, emulator_host=self.settings.pubsub_emulator_host)

        return self._pick("publisher", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def subscriber(self) -> Subscriber:
        def build() -> Subscriber:
            if self.settings.backend == "memory":
                return self._memory.pubsub
            from adapters.gcp.pubsub import PubSubSubscriber

            return PubSubSubscriber(
                self.settings.project_id,
                emulator_host=self.settings.pubsub_emulator_host,
                pull_mode=self.settings.worker.pull_mode,
            )

        return self._pick("subscriber", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def messaging_admin(self) -> MessagingAdmin:
        def build() -> MessagingAdmin:
            if self.settings.backend == "memory":
                return self._memory.pubsub
            from adapters.gcp.pubsub import PubSubAdmin

            return PubSubAdmin(self.settings.project_id, emulator_host=self.settings.pubsub_emulator_host)

        return self._pick("messaging_admin", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def webhooks(self) -> WebhookSender:
        def build() -> WebhookSender:
            if self.settings.backend == "memory":
                return self._memory.webhooks
            from adapters.http_webhooks import HttpWebhookSender

            return HttpWebhookSender()

        return self._pick("webhooks", build)  # type: ignore[no-any-return]


def bootstrap(settings: Settings, **overrides: Any) -> Backends:
    return Backends(settings, **overrides)
