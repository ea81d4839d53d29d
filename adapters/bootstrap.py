"""The composition root: every collaborator of every deployable, built once from its settings.

`bootstrap(settings, **overrides)` returns an `App`: the adapters (`Backends`: Google clients
pointed at GCP or the emulators, or the memory fakes) and the core services on them (one
`JobLedger` with the one `WebhookNotifier`, the job service, the upload trigger, the dead-letter
handler, the reconciler, accounts, the dispatcher; the GPU worker takes its ledger and reconciler). Each is
built on first use and then cached, so a warm function instance reuses its clients; nothing is
built at import time. Overrides swap single adapters by name (`documents=`, `blobs=`,
`publisher=`, `subscriber=`, `messaging_admin=`, `webhooks=`, `backlog=`, `worker_jobs=`) for tests.

Entry points hold one `App` per process (`functions.wiring`, `gpu_worker.__main__`) and only
decode, call and encode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from core.accounts import Accounts
from core.dead_letters import DeadLetterHandler
from core.dispatch import Dispatcher, DispatchPolicy
from core.ledger import JobLedger
from core.ports import (
    BacklogReader,
    BlobStore,
    DocumentStore,
    MessagingAdmin,
    Publisher,
    Subscriber,
    WebhookSender,
    WorkerJobRunner,
)
from core.reconciler import Reconciler
from core.settings import Settings
from core.submission import JobService
from core.uploads import UploadTrigger
from core.webhooks import WebhookNotifier


class NotConfigured(RuntimeError):
    """The settings lack what a collaborator needs (e.g. no worker job for the dispatcher)."""


class Backends:
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self._overrides = overrides

    def _adapter(self, name: str, memory: Callable[[Any], Any], gcp: Callable[[], Any]) -> Any:
        """An override by `name`, else the memory fake (`memory(fakes)`) or the GCP adapter (`gcp()`)."""
        if name in self._overrides:
            return self._overrides[name]
        return memory(self._memory) if self.settings.backend == "memory" else gcp()

    @functools.cached_property
    def _memory(self) -> Any:
        from adapters.memory import MemoryBackends

        return MemoryBackends()

    @functools.cached_property
    def blobs(self) -> BlobStore:
        return self._adapter("blobs", lambda fakes: fakes.blobs, self._gcs)  # type: ignore[no-any-return]

    @functools.cached_property
    def documents(self) -> DocumentStore:
        return self._adapter("documents", lambda fakes: fakes.documents, self._firestore)  # type: ignore[no-any-return]

    @functools.cached_property
    def publisher(self) -> Publisher:
        return self._adapter("publisher", lambda fakes: fakes.pubsub, self._pubsub_publisher)  # type: ignore[no-any-return]

    @functools.cached_property
    def subscriber(self) -> Subscriber:
        return self._adapter("subscriber", lambda fakes: fakes.pubsub, self._pubsub_subscriber)  # type: ignore[no-any-return]

    @functools.cached_property
    def messaging_admin(self) -> MessagingAdmin:
        return self._adapter("messaging_admin", lambda fakes: fakes.pubsub, self._pubsub_admin)  # type: ignore[no-any-return]

    @functools.cached_property
    def webhooks(self) -> WebhookSender:
        return self._adapter("webhooks", lambda fakes: fakes.webhooks, self._http_webhooks)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ the GCP adapters (emulators included)
    def _gcs(self) -> BlobStore:
        from adapters.gcp.storage import GcsBlobStore

        # Against fake-gcs-server, URLs are the emulator's unsigned download links.
        s = self.settings
        return GcsBlobStore(
            s.project_id, endpoint=s.storage_emulator_host, public_url=s.public_storage_url or s.storage_emulator_host
        )

    def _firestore(self) -> DocumentStore:
        from adapters.gcp.firestore import FirestoreDocumentStore

        return FirestoreDocumentStore(self.settings.project_id, emulator_host=self.settings.firestore_emulator_host)

    def _pubsub_publisher(self) -> Publisher:
        from adapters.gcp.pubsub import PubSubPublisher

        return PubSubPublisher(self.settings.project_id, emulator_host=self.settings.pubsub_emulator_host)

    def _pubsub_subscriber(self) -> Subscriber:
        from adapters.gcp.pubsub import PubSubSubscriber

        s = self.settings
        return PubSubSubscriber(s.project_id, emulator_host=s.pubsub_emulator_host, pull_mode=s.worker.pull_mode)

    def _pubsub_admin(self) -> MessagingAdmin:
        from adapters.gcp.pubsub import PubSubAdmin

        return PubSubAdmin(self.settings.project_id, emulator_host=self.settings.pubsub_emulator_host)

    def _http_webhooks(self) -> WebhookSender:
        from adapters.http_webhooks import HttpWebhookSender

        return HttpWebhookSender()

    @functools.cached_property
    def backlog(self) -> BacklogReader:
        if "backlog" in self._overrides:
            return self._overrides["backlog"]  # type: ignore[no-any-return]
        from adapters.gcp.monitoring import MonitoringBacklogReader

        return MonitoringBacklogReader(self.settings.project_id)

    @functools.cached_property
    def worker_jobs(self) -> WorkerJobRunner:
        if "worker_jobs" in self._overrides:
            return self._overrides["worker_jobs"]  # type: ignore[no-any-return]
        if self.settings.dispatch.worker_job is None:
            raise NotConfigured("GPUPIPE_DISPATCH_WORKER_JOB is not set: there is no worker job to start")
        from adapters.gcp.cloudrun_jobs import CloudRunWorkerJobs

        return CloudRunWorkerJobs(self.settings.dispatch.worker_job)


class App(Backends):
    """The adapters plus the core services on them, each built once."""

    @property
    def backends(self) -> Backends:
        return self

    @functools.cached_property
    def notifier(self) -> WebhookNotifier:
        return WebhookNotifier(self.webhooks, self.blobs, url_ttl_seconds=self.settings.signed_url_ttl_seconds)

    @functools.cached_property
    def ledger(self) -> JobLedger:
        return JobLedger(self.documents, on_terminal=self.notifier)

    @functools.cached_property
    def on_queued(self) -> Callable[[int], None] | None:
        """On Cloud Run workers, new jobs nudge the dispatcher so a worker starts without waiting
        for the scheduler's next tick; GKE (KEDA) and the local stack have no dispatch URL."""
        if not self.settings.dispatch.url:
            return None
        from adapters.dispatch_nudge import BackgroundNudger

        return BackgroundNudger(self.settings.dispatch.url)

    @functools.cached_property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.documents, self.blobs, self.publisher, self.settings, ledger=self.ledger)

    @functools.cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.documents, self.settings)

    @functools.cached_property
    def jobs(self) -> JobService:
        return JobService(
            self.documents,
            self.publisher,
            self.settings,
            blobs=self.blobs,
            ledger=self.ledger,
            on_queued=self.on_queued,
        )

    @functools.cached_property
    def uploads(self) -> UploadTrigger:
        return UploadTrigger(
            self.documents, self.blobs, self.publisher, self.settings, ledger=self.ledger, on_queued=self.on_queued
        )

    @functools.cached_property
    def dead_letters(self) -> DeadLetterHandler:
        return DeadLetterHandler(
            self.documents, self.blobs, self.settings, ledger=self.ledger, reconciler=self.reconciler
        )

    @functools.cached_property
    def dispatcher(self) -> Dispatcher:
        dispatch = self.settings.dispatch
        policy = DispatchPolicy(jobs_per_worker=dispatch.jobs_per_worker, max_workers=dispatch.max_workers)
        return Dispatcher(self.backlog, self.worker_jobs, policy, subscription=self.settings.names.jobs_subscription)


def bootstrap(settings: Settings, **overrides: Any) -> App:
    return App(settings, **overrides)
