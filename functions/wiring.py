"""The functions' one `App` per process (`adapters.bootstrap`): built from the environment on the
first request and kept for the life of the instance, so a warm function reuses its clients.
Nothing is built at import time.

Entry points call `services(environ)`. Tests call `install(settings, app)` to run the functions
over adapters the test also holds (memory fakes, or adapters on the emulators), and `reset()`
afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from adapters.bootstrap import App, Backends, bootstrap
from core.dispatch import Dispatcher
from core.logs import configure_logging
from core.settings import Settings

Services = App
"""What the entry points use: the composition root's `App`."""

_lock = threading.Lock()
_current: App | None = None
_dispatcher: Dispatcher | None = None


def services(environ: Mapping[str, str]) -> App:
    """The process's services, built from `environ` on the first call only."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            settings = Settings.from_env(environ)
            configure_logging(settings)
            _current = bootstrap(settings)
        return _current


def dispatcher(environ: Mapping[str, str]) -> Dispatcher:
    """The dispatch function's dispatcher (`NotConfigured` without a worker job)."""
    return _dispatcher or services(environ).dispatcher


def install(settings: Settings, backends: Backends) -> App:
    """Make the functions use these adapters (tests); returns the services they will use."""
    global _current
    app = backends if isinstance(backends, App) and backends.settings == settings else _rewrap(settings, backends)
    with _lock:
        _current = app
        return app


def install_dispatcher(installed: Dispatcher | None) -> None:
    """Use this dispatcher for the following dispatch requests (tests); None: the App's."""
    global _dispatcher
    with _lock:
        _dispatcher = installed


def reset() -> None:
    global _current, _dispatcher
    with _lock:
        _current = None
        _dispatcher = None


def _rewrap(settings: Settings, backends: Backends) -> App:
    return bootstrap(
        settings,
        documents=backends.documents,
        blobs=backends.blobs,
        publisher=backends.publisher,
        subscriber=backends.subscriber,
        messaging_admin=backends.messaging_admin,
        webhooks=backends.webhooks,
    )
