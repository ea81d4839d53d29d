"""The functions' one wiring point: settings, adapters and core services, built on the first
request and cached for the life of the process (a warm function instance reuses its clients).
Nothing is built at import time.

Entry points call `services(environ)`. Tests call `install(settings, backends)` to run the
functions over backends the test also holds (memory fakes, or adapters on the emulators), and
`reset()` afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.factory import Backends, bootstrap
from core.accounts import Accounts
from core.dead_letters import DeadLetterHandler
from core.logs import configure_logging
from core.reconciler import Reconciler
from core.settings import Settings
from core.submission import JobService
from core.uploads import UploadTrigger
from core.webhooks import WebhookNotifier
from functions.dispatch import BackgroundNudger


@dataclass(frozen=True)
class Services:
    settings: Settings
    backends: Backends
    accounts: Accounts
    jobs: JobService
    uploads: UploadTrigger
    dead_letters: DeadLetterHandler
    reconciler: Reconciler


_lock = threading.Lock()
_current: Services | None = None


def build(settings: Settings, backends: Backends) -> Services:
    documents, blobs, publisher = backends.documents, backends.blobs, backends.publisher
    # On Cloud Run workers, new jobs nudge the dispatcher so a worker starts without waiting for
    # the scheduler's next tick; GKE (KEDA) and the local stack have no dispatch URL.
    on_queued = BackgroundNudger(settings.dispatch.url) if settings.dispatch.url else None
    webhooks = WebhookNotifier(backends.webhooks, blobs, url_ttl_seconds=settings.signed_url_ttl_seconds)
    reconciler = Reconciler(documents, blobs, publisher, settings)
    return Services(
        settings=settings,
        backends=backends,
        accounts=Accounts(documents, settings),
        jobs=JobService(documents, publisher, settings, blobs=blobs, on_queued=on_queued, on_terminal=webhooks),
        uploads=UploadTrigger(documents, blobs, publisher, settings, on_queued=on_queued),
        dead_letters=DeadLetterHandler(documents, blobs, settings, reconciler=reconciler, on_terminal=webhooks),
        reconciler=reconciler,
    )


def services(environ: Mapping[str, str]) -> Services:
    """The process's services, built from `environ` on the first call only."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            settings = Settings.from_env(environ)
            configure_logging(settings)
            _current = build(settings, bootstrap(settings))
        return _current


def install(settings: Settings, backends: Backends) -> Services:
    """Make the functions use these backends (tests); returns the services they will use."""
    global _current
    with _lock:
        _current = build(settings, backends)
        return _current


def reset() -> None:
    global _current
    with _lock:
        _current = None
