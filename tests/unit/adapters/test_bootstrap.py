"""The wiring point builds the right adapters from settings alone, without touching a network."""

from __future__ import annotations

from adapters.bootstrap import bootstrap
from adapters.gcp.firestore import FirestoreDocumentStore
from adapters.gcp.pubsub import PubSubAdmin, PubSubPublisher, PubSubSubscriber
from adapters.gcp.storage import GcsBlobStore
from adapters.memory import MemoryBlobStore, MemoryDocumentStore, MemoryPubSub
from core.settings import Settings


def test_test_settings_give_one_set_of_memory_fakes() -> None:
    backends = bootstrap(Settings.from_env({"GPUPIPE_ENV": "test"}))

    assert isinstance(backends.blobs, MemoryBlobStore)
    assert isinstance(backends.documents, MemoryDocumentStore)
    assert isinstance(backends.publisher, MemoryPubSub)
    assert backends.publisher is backends.subscriber is backends.messaging_admin
    assert backends.blobs is backends.blobs  # cached


def test_emulator_settings_give_gcp_adapters_with_emulator_urls() -> None:
    settings = Settings.from_env(
        {
            "GPUPIPE_ENV": "local",
            "PUBSUB_EMULATOR_HOST": "127.0.0.1:1",
            "FIRESTORE_EMULATOR_HOST": "127.0.0.1:2",
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:3",
        }
    )

    backends = bootstrap(settings)

    assert isinstance(backends.blobs, GcsBlobStore)
    assert isinstance(backends.documents, FirestoreDocumentStore)
    assert isinstance(backends.publisher, PubSubPublisher)
    assert isinstance(backends.subscriber, PubSubSubscriber)
    assert isinstance(backends.messaging_admin, PubSubAdmin)
    assert (
        backends.blobs.url("outputs", "u1/jobs/j 1/0.png")
        == "http://127.0.0.1:3/download/storage/v1/b/outputs/o/u1%2Fjobs%2Fj%201%2F0.png?alt=media"
    )


def test_a_public_storage_url_wins_over_the_emulator_host() -> None:
    settings = Settings.from_env(
        {
            "GPUPIPE_ENV": "local",
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:3",
            "GPUPIPE_PUBLIC_STORAGE_URL": "http://localhost:8080/",
        }
    )

    url = bootstrap(settings).blobs.url("b", "x")

    assert url == "http://localhost:8080/download/storage/v1/b/b/o/x?alt=media"


def test_overrides_replace_single_adapters() -> None:
    fake = MemoryDocumentStore()

    backends = bootstrap(Settings.from_env({"GPUPIPE_ENV": "local"}), documents=fake)

    assert backends.documents is fake
