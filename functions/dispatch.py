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

import flask
import functions_framework

from adapters.bootstrap import NotConfigured, bootstrap
from adapters.dispatch_nudge import BackgroundNudger, nudge
from core.dispatch import Dispatcher
from core.ports import BackendUnavailable, BacklogReader, WorkerJobRunner
from core.settings import Settings
from functions import wiring

__all__ = ["BackgroundNudger", "NotConfigured", "build_dispatcher", "dispatch", "handle", "install", "nudge"]

log = logging.getLogger("gpupipe.dispatch")

MAX_QUEUED_HINT = 10_000
RETRY_AFTER_SECONDS = "30"


def build_dispatcher(
    settings: Settings, *, backlog: BacklogReader | None = None, workers: WorkerJobRunner | None = None
) -> Dispatcher:
    """The dispatcher for these settings, from the composition root; tests pass hand-written
    fakes for the two ports. `NotConfigured` when no worker job is named."""
    overrides: dict[str, object] = {}
    if backlog is not None:
        overrides["backlog"] = backlog
    if workers is not None:
        overrides["worker_jobs"] = workers
    return bootstrap(settings, **overrides).dispatcher


def install(dispatcher: Dispatcher | None) -> None:
    """Use this dispatcher for the following requests (tests); None rebuilds from the environment."""
    wiring.install_dispatcher(dispatcher)


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
        dispatcher = wiring.dispatcher(os.environ)
    except NotConfigured as exc:
        return _error(503, "unavailable", str(exc), **{"Retry-After": RETRY_AFTER_SECONDS})
    return handle(request, dispatcher)
