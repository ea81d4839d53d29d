"""In-memory fakes of every port, for unit tests and `GPUPIPE_ENV=test`.

They pass the same contract suite (`tests/contract`) as the GCP adapters. `MemoryBackends()`
bundles one of each; `.pubsub` serves as publisher, subscriber and messaging admin at once.
"""

from __future__ import annotations

from adapters.memory.blobs import MemoryBlobStore
from adapters.memory.documents import MemoryDocumentStore
from adapters.memory.pubsub import MemoryPubSub
from adapters.memory.webhooks import MemoryWebhookSender


class MemoryBackends:
    def __init__(self, *, pubsub_backoff_scale: float = 0.01) -> None:
        self.blobs = MemoryBlobStore()
        self.documents = MemoryDocumentStore()
        self.pubsub = MemoryPubSub(backoff_scale=pubsub_backoff_scale)
        self.webhooks = MemoryWebhookSender()


__all__ = ["MemoryBackends", "MemoryBlobStore", "MemoryDocumentStore", "MemoryPubSub", "MemoryWebhookSender"]
