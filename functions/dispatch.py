"""The `dispatch` function: start Cloud Run GPU workers when the jobs subscription has backlog.

Called by Cloud Scheduler every minute and nudged by the API after each submit (`nudge`). The
decision is `core.dispatch.Dispatcher`'s; this module only decodes the request, wires the GCP
adapters from settings (once per process) and encodes the result. Terraform runs it with one
instance and one request at a time, so two calls never both see "nothing running".

Request: POST, optional JSON body `{"reason": str, "queued": int}` where `queued` is a lower
bound on the backlog the caller knows of. Response: 200 `{"backlog", "running", "wanted",
"started", "operation"}`; 503 `unavailable` when the backlog or the job cannot be read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import flask
import functions_framework
import google.auth.exceptions
import requests

from core.dispatch import Dispatcher, DispatchPolicy
from core.logs import configure_logging
from core.ports import BackendUnavailable, BacklogReader, WorkerJobRunner
from core.settings import Settings

log = logging.getLogger("gpupipe.dispatch")

MAX_QUEUED_HINT = 10_000
RETRY_AFTER_SECONDS = "30"

_lock = threading.Lock()
_dispatcher: Dispatcher | None = None


class NotConfigured(RuntimeError):
    """The settings name no worker job to start."""


def build_dispatcher(
    settings: Settings, *, backlog: BacklogReader | None = None, workers: WorkerJobRunner | None = None
) -> Dispatcher:
    """The dispatcher for these settings; tests pass hand-written fakes for the two ports."""
    policy = DispatchPolicy(
        jobs_per_worker=settings.dispatch.jobs_per_worker, max_workers=settings.dispatch.max_workers
    )
    if backlog is None:
        from adapters.gcp.monitoring import MonitoringBacklogReader

        backlog = MonitoringBacklogReader(settings.project_id)
    if workers is None:
        if settings.dispatch.worker_job is None:
            raise NotConfigured("GPUPIPE_DISPATCH_WORKER_JOB is not set: there is no worker job to start")
        from adapters.gcp.cloudrun_jobs import CloudRunWorkerJobs

        workers = CloudRunWorkerJobs(settings.dispatch.worker_job)
    return Dispatcher(backlog, workers, policy, subscription=settings.names.jobs_subscription)


def install(dispatcher: Dispatcher | None) -> None:
    """Use this dispatcher for the following requests (tests); None rebuilds from the environment."""
    global _dispatcher
    with _lock:
        _dispatcher = dispatcher


def _current(environ: Mapping[str, str]) -> Dispatcher:
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            settings = Settings.from_env(environ)
            configure_logging(settings)
            _dispatcher = build_dispatcher(settings)
        return _dispatcher


def _error(status: int, code: str, message: str, **headers: str) -> flask.Response:
    body = json.dumps({"error": {"code": code, "message": message, "details": []}})
    return flask.Response(body, status=status, mimetype="application/json", headers=headers)


def queued_hint(request: flask.Request) -> int:
    """The body's `queued` (0 without a body); ValueError naming the field when it is not valid."""
    if not request.get_data():
        return 0
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    queued = body.get("queued", 0)
    if isinstance(queued, bool) or not isinstance(queued, int) or not 0 <= queued <= MAX_QUEUED_HINT:
        raise ValueError(f"`queued` must be an integer from 0 to {MAX_QUEUED_HINT}, got {queued!r}")
    return queued


def handle(request: flask.Request, dispatcher: Dispatcher) -> flask.Response:
    if request.method != "POST":
        return _error(405, "method_not_allowed", "dispatch accepts POST only", Allow="POST")
    try:
        hint = queued_hint(request)
    except ValueError as exc:
        return _error(400, "invalid_argument", str(exc))
    try:
        result = dispatcher.run(queued_hint=hint)
    except BackendUnavailable as exc:
        log.warning("dispatch could not read or start workers: %s", exc)
        return _error(503, "unavailable", str(exc), **{"Retry-After": RETRY_AFTER_SECONDS})
    return flask.Response(json.dumps(result.to_dict()), status=200, mimetype="application/json")


@functions_framework.http
def dispatch(request: flask.Request) -> flask.Response:
    try:
        dispatcher = _current(os.environ)
    except NotConfigured as exc:
        return _error(503, "unavailable", str(exc), **{"Retry-After": RETRY_AFTER_SECONDS})
    return handle(request, dispatcher)


def google_id_token(audience: str) -> str:
    """An ID token for `audience` from the runtime's credentials (the metadata server on GCP)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


def nudge(
    url: str | None,
    *,
    queued: int = 1,
    timeout: float = 2.0,
    id_token: Callable[[str], str] = google_id_token,
    session: Any = None,
) -> bool:
    """Ask dispatch to look at the backlog now (the API calls this after a submit). Best effort:
    returns False (and logs) instead of raising, and never waits longer than `timeout`; the next
    scheduler tick catches up. No URL (local stack, GKE) means nothing to do."""
    if not url:
        return False
    try:
        token = id_token(url)
        response = (session or requests).post(
            url,
            json={"reason": "submit", "queued": queued},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except (requests.RequestException, OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        log.warning("could not nudge dispatch at %s: %s", url, exc)
        return False
    if response.status_code != 200:
        log.warning("dispatch answered the nudge with %s", response.status_code)
        return False
    return True


class BackgroundNudger:
    """Nudges dispatch off the request path: a submit never waits for it. Nudges that arrive
    while one is in flight are merged into the next one, so a burst of submits costs at most
    two calls."""

    def __init__(self, url: str, send: Callable[..., bool] = nudge) -> None:
        self._url = url
        self._send = send
        self._lock = threading.Lock()
        self._pending = 0
        self._running = False

    def __call__(self, queued: int) -> None:
        with self._lock:
            self._pending += queued
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._drain, name="dispatch-nudge", daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                queued, self._pending = self._pending, 0
                if queued == 0:
                    self._running = False
                    return
            try:
                self._send(self._url, queued=queued)
            except Exception:  # noqa: BLE001 - best effort: log it, and keep this nudger alive
                log.exception("nudging dispatch failed")

    def idle(self) -> bool:
        with self._lock:
            return not self._running
