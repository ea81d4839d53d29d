"""The composition root: every collaborator of every deployable, built once from its settings.

`bootstrap(settings, **overrides)` returns an `App`: the adapters (`Backends`: Google clients
pointed at GCP or the emulators, or the memory fakes) and the core services on them (one
`JobLedger` with the one `WebhookNotifier`, the job service, the upload trigger, the dead-letter
handler, the reconciler, accounts, the dispatcher, and `worker(...)` for the GPU worker). Each is
built on first use and then cached, so a warm function instance reuses its clients; nothing is
built at import time. Overrides swap single adapters by name (`documents=`, `blobs=`,
`publisher=`, `subscriber=`, `messaging_admin=`, `webhooks=`, `backlog=`, `worker_jobs=`) for tests.

Entry points hold one `App` per process (`functions.wiring`, `gpu_worker.__main__`) and only
decode, call and encode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from gpu_worker.consumer import Worker
    from gpu_worker.metrics import WorkerMetrics
    from gpu_worker.runner import Runner


class NotConfigured(RuntimeError):
    """The settings lack what a collaborator needs (e.g. no worker job for the dispatcher)."""


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

    @functools.cached_property
    def backlog(self) -> BacklogReader:
        def build() -> BacklogReader:
            from adapters.gcp.monitoring import MonitoringBacklogReader

            return MonitoringBacklogReader(self.settings.project_id)

        return self._pick("backlog", build)  # type: ignore[no-any-return]

    @functools.cached_property
    def worker_jobs(self) -> WorkerJobRunner:
        def build() -> WorkerJobRunner:
            if self.settings.dispatch.worker_job is None:
                raise NotConfigured("GPUPIPE_DISPATCH_WORKER_JOB is not set: there is no worker job to start")
            from adapters.gcp.cloudrun_jobs import CloudRunWorkerJobs

            return CloudRunWorkerJobs(self.settings.dispatch.worker_job)

        return self._pick("worker_jobs", build)  # type: ignore[no-any-return]


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

    def worker(self, runner: Runner, *, worker_id: str, metrics: WorkerMetrics | None = None) -> Worker:
        """The GPU worker's consumer on this process's ledger and reconciler."""
        from gpu_worker.consumer import Worker

        return Worker(
            self.settings,
            documents=self.documents,
            blobs=self.blobs,
            subscriber=self.subscriber,
            runner=runner,
            worker_id=worker_id,
            metrics=metrics,
            ledger=self.ledger,
            reconciler=self.reconciler,
        )


def bootstrap(settings: Settings, **overrides: Any) -> App:
    return App(settings, **overrides)
