"""functions-framework entry points of gpupipe. Thin: decode, call core, encode.

- `api` (HTTP): the v1 job API (`functions.http.api`).
- `on_upload` (CloudEvent, Pub/Sub messagePublished of a Cloud Storage notification): an upload
  to the inbox becomes a batch (`core.uploads`).
- `on_dead_letter` (CloudEvent, Pub/Sub messagePublished from the jobs dead-letter topic):
  fails the job (`core.dead_letters`).
- `dispatch` (HTTP): starts GPU workers when there is backlog (`functions.dispatch`).
- `reconcile` (HTTP, called by Cloud Scheduler every minute): one recovery sweep
  (`core.reconciler`): jobs whose delivery was lost are published again.

The event functions return normally for events that can never succeed (logged, so Pub/Sub
does not redeliver them forever) and raise on transient failures so that they are redelivered.
Settings come from the environment once, on the first call (`functions.wiring`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Any

try:
    importlib.util.find_spec("functions.wiring")
except ModuleNotFoundError:
    # functions-framework loads this file as a module named "main" from its own folder; make the
    # project root importable when gpupipe is not installed in the environment.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flask  # noqa: E402
import functions_framework  # noqa: E402

from core.job_messages import NotAJobMessage, job_id_of, requeue_of  # noqa: E402
from core.uploads import MalformedNotification, StorageNotification  # noqa: E402
from functions import wiring  # noqa: E402
from functions.dispatch import dispatch  # noqa: E402,F401  (a target of this file: functions.dispatch)
from functions.events import NotAPubSubEvent, pubsub_message  # noqa: E402
from functions.http.api import framework_error, handle  # noqa: E402

log = logging.getLogger("gpupipe.functions")

# functions-framework executes this file inside the app context of the app it is creating:
# register on exactly that app, so framework-level 404/405s are JSON too. (Its module-level
# `errorhandler` points at whichever app was created last, which races when apps are created
# concurrently.) A plain import has no app context and registers nothing.
if flask.has_app_context():
    for _status in (404, 405):
        flask.current_app.register_error_handler(_status, framework_error)


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    return handle(request, wiring.services(os.environ))


@functions_framework.cloud_event
def on_upload(event: Any) -> None:
    services = wiring.services(os.environ)
    try:
        message = pubsub_message(event)
        notification = StorageNotification.from_message(message.attributes, message.data)
    except (NotAPubSubEvent, MalformedNotification) as exc:
        log.error(
            "dropping an upload event that is not a storage notification: %s", exc, extra={"event_id": event["id"]}
        )
        return
    services.uploads.handle(notification)


@functions_framework.cloud_event
def on_dead_letter(event: Any) -> None:
    services = wiring.services(os.environ)
    try:
        message = pubsub_message(event)
        job_id = job_id_of(message.attributes, message.data)
    except (NotAPubSubEvent, NotAJobMessage) as exc:
        log.error("dropping a dead letter that names no job: %s", exc, extra={"event_id": event["id"]})
        return
    services.dead_letters.handle(
        job_id, delivery_attempts=message.delivery_attempt, requeue=requeue_of(message.attributes)
    )


@functions_framework.http
def reconcile(request: flask.Request) -> flask.Response:
    """One recovery sweep; answers what it did. Cloud Scheduler calls it with an OIDC token
    (only its service account may invoke the function)."""
    del request
    report = wiring.services(os.environ).reconciler.sweep()
    return flask.jsonify({"status": "ok", **report.as_dict()})
