"""What `gpupipe` exits with, and the one error line it prints for an SDK error.

`Exit` and `EXIT_CODES` (the text `gpupipe --help` ends with) must agree; scripts rely on both.
"""

from __future__ import annotations

from enum import IntEnum

from client.errors import (
    ApiError,
    Conflict,
    GpupipeError,
    InvalidArgument,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)


class Exit(IntEnum):
    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    RATE_LIMITED = 5
    UNAVAILABLE = 6
    TIMEOUT = 7
    CONFLICT = 8


EXIT_CODES = """\
exit codes:
  0  success
  1  the job (or a job of the batch) failed or was cancelled, or has nothing to download yet
  2  usage error: bad arguments, missing configuration, or a request the API rejected as invalid
  3  not found: no such job or batch (for this API key)
  4  authentication failed: missing, unknown or revoked API key
  5  rate limited or over quota (the message says when to retry)
  6  the API or a backend is unavailable, or cannot be reached
  7  timed out waiting for the job or batch
  8  conflict: the job already finished, or an idempotency key was reused with another request

environment:
  GPUPIPE_API_URL, GPUPIPE_API_KEY   the API and your key (after `make up`: source .gpupipe/local.env)
  GPUPIPE_USER_ID                    default user for `batch upload`
"""

# The first class an error is an instance of decides (subclasses before their bases).
_CODES: tuple[tuple[type[GpupipeError], Exit], ...] = (
    (InvalidArgument, Exit.USAGE),
    (PayloadTooLarge, Exit.USAGE),
    (UnsupportedMediaType, Exit.USAGE),
    (NotFound, Exit.NOT_FOUND),
    (Unauthenticated, Exit.AUTH),
    (RateLimited, Exit.RATE_LIMITED),
    (Unavailable, Exit.UNAVAILABLE),
    (ServerError, Exit.UNAVAILABLE),
    (NetworkError, Exit.UNAVAILABLE),
    (WaitTimeout, Exit.TIMEOUT),
    (Conflict, Exit.CONFLICT),
)


def exit_code_for(exc: GpupipeError) -> int:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return Exit.UNAVAILABLE if isinstance(exc, ApiError) and (exc.status or 0) >= 500 else Exit.JOB_FAILED


def describe(exc: GpupipeError) -> str:
    """One line for a person: the API's message and each bad field."""
    text = str(exc)
    if isinstance(exc, ApiError) and exc.retry_after is not None and isinstance(exc, RateLimited | Unavailable):
        text += f"; retry in {exc.retry_after:.0f}s"
    return " ".join(text.split())
