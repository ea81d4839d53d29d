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

import logging
import os
from typing import Any

import flask
import functions_framework

from core.job_messages import NotAJobMessage, job_id_of, requeue_of
from core.storage_events import MalformedNotification, StorageNotification
from functions import wiring
from functions.dispatch import dispatch  # noqa: F401  (a target of this file: functions.dispatch)
from functions.events import NotAPubSubEvent, pubsub_message
from functions.http.api import answer_framework_errors_in_json, handle

log = logging.getLogger("gpupipe.functions")

# The one thing done at import, because functions-framework offers no later hook: it executes
# this file inside the app context of the Flask app it is building, and that app's own router
# answers some requests before any function runs (see `answer_framework_errors_in_json`); Flask
# refuses new error handlers once an app has served a request. Register on exactly that app: the
# framework's module-level `errorhandler` points at whichever app was created last, which races
# when apps are created concurrently. A plain import has no app context and changes nothing.
if flask.has_app_context():
    answer_framework_errors_in_json(flask.current_app)


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
