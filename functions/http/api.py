"""The `api` HTTP function's routing and encoding: decode a request, call a core service,
encode the result (or the error envelope). Every route of the v1 contract lives here."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule

from core import json_input
from core.errors import FieldError, GpupipeError, InvalidArgument, PayloadTooLarge, UnsupportedMediaType
from core.jobs import Job
from core.logs import trace_context
from core.ports import AdapterError
from core.submission import list_models
from core.users import User
from functions.http import errors
from functions.http.docs import render_docs
from functions.http.openapi import openapi_document
from functions.wiring import Services

log = logging.getLogger(__name__)

JSON = "application/json"
_INTEGER = re.compile(r"-?[0-9]{1,20}")  # longer is out of every range and costly for int()

Handler = Callable[["Call"], flask.Response]


@dataclass(frozen=True)
class Call:
    request: flask.Request
    services: Services
    params: dict[str, str]
    user: User | None


@dataclass(frozen=True)
class Endpoint:
    """What a route runs (the endpoint of its werkzeug `Rule`)."""

    handler: Handler
    authenticated: bool = True


def handle(request: flask.Request, services: Services) -> flask.Response:
    trace = request.headers.get("X-Cloud-Trace-Context") or request.headers.get("traceparent")
    with trace_context(trace):
        try:
            return _dispatch(request, services)
        except GpupipeError as exc:
            return _error(errors.from_domain(exc))
        except AdapterError as exc:
            log.warning("backend failure on %s %s: %s", request.method, request.path, exc)
            return _error(errors.from_adapter(exc))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _error(errors.internal())


def answer_framework_errors_in_json(app: flask.Flask) -> None:
    """Make the 404s and 405s of functions-framework's own router (requests it refuses before
    `api` runs: /favicon.ico, /robots.txt, /static/..., paths holding a newline; any method but
    POST on an event function) answer in the contract's JSON envelope, not Flask's HTML."""
    app.register_error_handler(NotFound, _framework_error)
    app.register_error_handler(MethodNotAllowed, _framework_error)


def _framework_error(exc: HTTPException) -> flask.Response:
    return _error(_routing_error(exc, flask.request))


def _routing_error(exc: HTTPException, request: flask.Request) -> errors.HttpError:
    if isinstance(exc, MethodNotAllowed):
        return errors.method_not_allowed(request.method, list(exc.valid_methods or ()))
    return errors.not_found(request.path)


def _dispatch(request: flask.Request, services: Services) -> flask.Response:
    try:
        endpoint, params = ROUTES.bind_to_environ(request.environ).match()
    except (NotFound, MethodNotAllowed) as exc:
        return _error(_routing_error(exc, request))
    assert isinstance(endpoint, Endpoint)
    user = services.accounts.authenticate(request.headers.get("Authorization")) if endpoint.authenticated else None
    return endpoint.handler(Call(request, services, dict(params), user))


# ---------------------------------------------------------------------- encoding
def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.Response(json.dumps(body, separators=(",", ":"), allow_nan=False), status=status, mimetype=JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(err: errors.HttpError) -> flask.Response:
    return _json(err.body(), err.status, err.headers)


def _job(call: Call, job: Job) -> dict[str, Any]:
    settings = call.services.settings
    blobs = call.services.backends.blobs
    return job.to_public(lambda bucket, name: blobs.url(bucket, name, ttl_seconds=settings.signed_url_ttl_seconds))


def _user(call: Call) -> User:
    assert call.user is not None, "route is authenticated"
    return call.user


# ---------------------------------------------------------------------- decoding
def _json_body(request: flask.Request, limit: int) -> Any:
    mimetype = (request.mimetype or "").lower()
    if mimetype != JSON:
        raise UnsupportedMediaType(f"the body must be {JSON}, got {request.content_type or 'no Content-Type'}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; the limit is {limit}")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
    try:
        return json_input.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("the body is not valid JSON", [FieldError("(body)", str(exc))]) from None


def _int_arg(request: flask.Request, name: str) -> int | None:
    """A query parameter the OpenAPI document types as an integer: absent, or ASCII digits with
    an optional minus (`int()` alone would also take "", " 5", "1_0" and non-ASCII digits)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise InvalidArgument(
            f"invalid {name}", [FieldError(name, f"must be an integer of at most 20 digits, got {shown!r}")]
        )
    return int(raw)


# ---------------------------------------------------------------------- handlers
def submit_job(call: Call) -> flask.Response:
    settings = call.services.settings
    body = _json_body(call.request, settings.request_limits.max_body_bytes)
    key = call.request.headers.get("Idempotency-Key")
    submitted = call.services.jobs.submit(_user(call), body, idempotency_key=key)
    headers = {"Location": f"/v1/jobs/{submitted.job.id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return _json(_job(call, submitted.job), 202, headers)


def get_job(call: Call) -> flask.Response:
    return _json(_job(call, call.services.jobs.get(_user(call), call.params["id"])))


def list_jobs(call: Call) -> flask.Response:
    args = call.request.args
    page = call.services.jobs.list(
        _user(call),
        # Present but empty is not absent: `status=` matches no status and is refused.
        status=args.get("status"),
        page_size=_int_arg(call.request, "page_size"),
        page_token=args.get("page_token") or None,
    )
    return _json({"jobs": [_job(call, j) for j in page.jobs], "next_page_token": page.next_page_token})


def cancel_job(call: Call) -> flask.Response:
    return _json(_job(call, call.services.jobs.cancel(_user(call), call.params["id"])))


def get_batch(call: Call) -> flask.Response:
    return _json(call.services.jobs.batch(_user(call), call.params["id"]).to_public())


def get_usage(call: Call) -> flask.Response:
    return _json(call.services.jobs.usage(_user(call)))


def get_models(call: Call) -> flask.Response:
    models = list_models(call.services.backends.documents)
    return _json(
        {
            "models": [
                {"name": m["name"], "version": m.get("version"), "default": bool(m.get("default"))} for m in models
            ]
        }
    )


def health(call: Call) -> flask.Response:
    return _json({"status": "ok"})


def openapi(call: Call) -> flask.Response:
    settings = call.services.settings
    return _json(openapi_document(settings.request_limits, settings.api_url))


def docs(call: Call) -> flask.Response:
    settings = call.services.settings
    html = render_docs(openapi_document(settings.request_limits, settings.api_url))
    return flask.Response(html, status=200, mimetype="text/html")


# ---------------------------------------------------------------------- routes
class _IdConverter(BaseConverter):
    """A job or batch id as routing sees it: one path segment without a colon, so that
    `{id}:cancel` is told apart from `{id}`. Whether an id is well formed is the core's
    business: a malformed id is a 404 like an unknown one."""

    regex = "[^/:]+"


def _route(method: str, path: str, handler: Handler, *, authenticated: bool = True) -> Rule:
    rule = Rule(path, methods=[method], endpoint=Endpoint(handler, authenticated))
    # werkzeug adds HEAD to every GET rule; the contract has no HEAD (it gets 405 like any
    # method a path does not name, and Allow lists only the contract's methods).
    rule.methods = {method}
    return rule


ROUTES = Map(
    [
        _route("POST", "/v1/jobs", submit_job),
        _route("GET", "/v1/jobs", list_jobs),
        _route("GET", "/v1/jobs/<id:id>", get_job),
        _route("POST", "/v1/jobs/<id:id>:cancel", cancel_job),
        _route("GET", "/v1/batches/<id:id>", get_batch),
        _route("GET", "/v1/usage", get_usage),
        _route("GET", "/v1/models", get_models),
        _route("GET", "/healthz", health, authenticated=False),
        _route("GET", "/openapi.json", openapi, authenticated=False),
        _route("GET", "/docs", docs, authenticated=False),
    ],
    converters={"id": _IdConverter},
    # A path is matched as written: `/v1//jobs` and `/v1/jobs/` are 404s, never redirects.
    merge_slashes=False,
    strict_slashes=True,
)
