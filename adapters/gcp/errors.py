"""One translation from google-cloud and transport exceptions to the ports' exceptions."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exc

from core.ports import AdapterError, AlreadyExists, BackendUnavailable, NotFound, PreconditionFailed, TransactionAborted

# What a retry may outlast: the backend is down, overloaded or slow.
TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.TooManyRequests,
    gexc.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    auth_exc.TransportError,
    concurrent.futures.TimeoutError,
    ConnectionError,
)


def bounded_retry(
    timeout: float,
    *,
    also: tuple[type[Exception], ...] = (),
    only: tuple[type[Exception], ...] | None = None,
) -> gretry.Retry:
    """Retry transient errors (plus `also`; or `only` these) with backoff, for `timeout` seconds in all."""
    transient = gretry.if_exception_type(*only) if only is not None else gretry.if_transient_error
    extra = gretry.if_exception_type(*also)

    def predicate(exc: Exception) -> bool:
        return bool(transient(exc) or extra(exc))

    return gretry.Retry(
        predicate=predicate,
        initial=0.1,
        maximum=2.0,
        multiplier=2.0,
        timeout=timeout,
    )


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise library exceptions as the ports' exceptions, naming `what` was attempted."""
    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(f"{what}: {exc.message}") from exc
    except gexc.Aborted as exc:  # before Conflict: Aborted is a 409 too
        raise TransactionAborted(f"{what}: {exc.message}") from exc
    except (gexc.AlreadyExists, gexc.Conflict) as exc:
        raise AlreadyExists(f"{what}: {exc.message}") from exc
    except (gexc.PreconditionFailed, gexc.FailedPrecondition) as exc:
        raise PreconditionFailed(f"{what}: {exc.message}") from exc
    except TRANSIENT as exc:
        raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except gexc.GoogleAPIError as exc:
        # Anything else the backend answered (Unknown, Cancelled, InvalidArgument, ...): still a
        # port error, so no caller has to know Google's exception types.
        raise AdapterError(f"{what}: {type(exc).__name__}: {exc}") from exc
