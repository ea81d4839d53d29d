"""Domain and adapter exceptions to HTTP status codes and the contract's error envelope:
`{"error": {"code", "message", "details": [{"field", "message"}]}}`. Only this module knows
which status code a domain error becomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from core import errors as e
from core.ports import AdapterError, BackendUnavailable, TransactionAborted

_STATUS: dict[type[e.GpupipeError], int] = {
    e.InvalidArgument: 400,
    e.Unauthenticated: 401,
    e.NotFoundError: 404,
    e.Conflict: 409,
    e.InvalidTransition: 409,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.ResourceExhausted: 429,
    e.Unavailable: 503,
}

BACKEND_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str
    message: str
    details: list[dict[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def from_domain(exc: e.GpupipeError) -> HttpError:
    status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 500)
    details = [d.as_dict() for d in exc.details] if isinstance(exc, e.InvalidArgument) else []
    headers: dict[str, str] = {}
    if isinstance(exc, e.ResourceExhausted | e.Unavailable):
        headers["Retry-After"] = str(max(1, int(exc.retry_after_seconds)))
    if isinstance(exc, e.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="gpupipe"'
    return HttpError(status, exc.code, exc.message, details, headers)


def from_adapter(exc: AdapterError) -> HttpError:
    """A backend failure the core did not turn into a domain error: always 503, never 500."""
    if isinstance(exc, TransactionAborted):
        message = "too many concurrent changes; try again"
    elif isinstance(exc, BackendUnavailable):
        message = "a backend is unavailable; try again later"
    else:
        message = "a backend failed; try again later"
    return HttpError(503, "unavailable", message, headers={"Retry-After": str(BACKEND_RETRY_AFTER_SECONDS)})


def not_found(path: str) -> HttpError:
    return HttpError(404, "not_found", f"no such resource: {path}")


def method_not_allowed(method: str, allowed: list[str]) -> HttpError:
    return HttpError(
        405, "method_not_allowed", f"{method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed))}
    )


def internal() -> HttpError:
    return HttpError(500, "internal", "an internal error occurred; it has been logged")
