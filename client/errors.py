"""The SDK's exception hierarchy, one class per error code of the HTTP contract.

Every error the SDK raises is a `GpupipeError`. An `ApiError` came back from the API as
`{"error": {"code", "message", "details"}}` and keeps those fields and the HTTP status;
`NetworkError` means the API could not be reached or did not answer in time; `WaitTimeout`
means a bounded wait ran out before the job or batch finished.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from typing import Any


class GpupipeError(Exception):
    """Base of every error the gpupipe SDK raises."""


@dataclass(frozen=True)
class FieldDetail:
    """One bad field of a rejected request, as the API names it."""

    field: str
    message: str


class ApiError(GpupipeError):
    """The API answered with an error. `code` is the contract's error code (`not_found`, ...)."""

    default_code = "unknown"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[FieldDetail] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.details = details or []
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = self.message
        if self.details:
            text += " (" + "; ".join(f"{d.field}: {d.message}" for d in self.details) + ")"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, message={self.message!r})"


class InvalidArgument(ApiError):
    """400: the request was rejected; `details` names each bad field."""

    default_code = "invalid_argument"


class Unauthenticated(ApiError):
    """401: the API key is missing, malformed, unknown or revoked."""

    default_code = "unauthenticated"


class NotFound(ApiError):
    """404: no such job or batch for this caller (other users' ids look the same)."""

    default_code = "not_found"


class Conflict(ApiError):
    """409: the job is already terminal, or an Idempotency-Key was reused with another body."""

    default_code = "conflict"


class PayloadTooLarge(ApiError):
    """413: the request body is larger than the API accepts."""

    default_code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """415: the request body was not JSON."""

    default_code = "unsupported_media_type"


class RateLimited(ApiError):
    """429: a rate limit, the concurrency limit or the daily quota. `retry_after` is in seconds."""

    default_code = "resource_exhausted"


class Unavailable(ApiError):
    """503 (or another 5xx): the service or one of its backends is down; retry later."""

    default_code = "unavailable"


class ServerError(ApiError):
    """Any other 5xx: a fault on the server's side, not in the request."""

    default_code = "internal"


class NetworkError(GpupipeError):
    """The API could not be reached, or did not answer within the client's timeout."""


class WaitTimeout(GpupipeError):
    """A bounded wait ended before the job or batch finished. `last` is what was seen last."""

    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


BY_CODE: dict[str, type[ApiError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        Unavailable,
        ServerError,
    )
}

BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def error_from_response(status: int, body: Any, retry_after_header: str | None) -> ApiError:
    """The exception for an error response. The body's `code` picks the class; a body that is
    not the contract's error object (a proxy's HTML page, say) falls back on the status."""
    error = body.get("error") if isinstance(body, dict) else None
    code = message = None
    details: list[FieldDetail] = []
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        for item in error.get("details") or []:
            if isinstance(item, dict):
                details.append(FieldDetail(str(item.get("field", "")), str(item.get("message", ""))))
    cls = BY_CODE.get(code or "") or BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        message or f"the API answered HTTP {status}",
        code=code,
        status=status,
        details=details,
        retry_after=parse_retry_after(retry_after_header),
    )
