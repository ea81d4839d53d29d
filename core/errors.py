"""The domain's exception hierarchy. Entry points map these to status codes; nothing in
`core` knows about HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class GpupipeError(Exception):
    """Base of the domain's errors; `code` is the API's error code (`class X(GpupipeError, code=...)`)."""

    code = "internal"

    def __init_subclass__(cls, code: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GpupipeError, code="invalid_argument"):
    """The request is invalid; `details` names each bad field."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class Unauthenticated(GpupipeError, code="unauthenticated"):
    """No valid API key."""


class NotFoundError(GpupipeError, code="not_found"):
    """No such object for this caller."""


class Conflict(GpupipeError, code="conflict"):
    """The object's state forbids the change."""


class PayloadTooLarge(GpupipeError, code="payload_too_large"):
    """The body or file is over its limit."""


class UnsupportedMediaType(GpupipeError, code="unsupported_media_type"):
    """The body is not JSON."""


class ResourceExhausted(GpupipeError, code="resource_exhausted"):
    """A rate, concurrency or quota limit; retry after `retry_after_seconds`."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(GpupipeError, code="unavailable"):
    """A backend is down; retry after `retry_after_seconds`."""

    def __init__(self, message: str, retry_after_seconds: int = 5) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class InvalidTransition(GpupipeError, code="conflict"):
    """A job lifecycle change that the rules forbid (it would move the job backwards)."""


class ClaimHeld(InvalidTransition):
    """Another live worker holds the job (a duplicate delivery): this worker must not run it."""


class ClaimLost(InvalidTransition):
    """The worker's claim on a job was taken over (it went silent, another worker claimed the job):
    its result must be dropped, without outputs or usage."""
