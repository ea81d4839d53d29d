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
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GpupipeError):
    code = "invalid_argument"

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class Unauthenticated(GpupipeError):
    code = "unauthenticated"


class NotFoundError(GpupipeError):
    code = "not_found"


class Conflict(GpupipeError):
    code = "conflict"


class PayloadTooLarge(GpupipeError):
    code = "payload_too_large"


class UnsupportedMediaType(GpupipeError):
    code = "unsupported_media_type"


class ResourceExhausted(GpupipeError):
    code = "resource_exhausted"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(GpupipeError):
    code = "unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 5) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class InvalidTransition(GpupipeError):
    """A job lifecycle change that the rules forbid (it would move the job backwards)."""

    code = "conflict"


class ClaimHeld(InvalidTransition):
    """Another live worker holds the job (a duplicate delivery): this worker must not run it."""


class ClaimLost(InvalidTransition):
    """The worker's claim on a job was taken over (it went silent, another worker claimed the job):
    its result must be dropped, without outputs or usage."""
