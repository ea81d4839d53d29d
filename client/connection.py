"""HTTP to the gpupipe API and to storage: requests with their retry policy, error statuses
mapped onto `client.errors`, and decoding of the JSON bodies into typed results.

`client.sdk.Client` composes this with `client.polling`; nothing here knows the API's routes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from client.errors import ApiError, GpupipeError, NetworkError, Unavailable, error_from_response

USER_AGENT = "gpupipe-sdk/0.1"
R = TypeVar("R")
Retry = Literal["all", "network", "none"]


class ApiConnection:
    """The HTTP clients of one `Client`: one for the API, carrying the API key, and one for
    storage (output URLs), which never sees it.

    `transport` and `storage_transport` replace httpx's network transports; `sleep` is what a
    retry waits with (tests pass a fake)."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None,
        storage_transport: httpx.BaseTransport | None,
        max_retries: int,
        max_retry_wait: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url
        self._max_retries = max(0, max_retries)
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=api_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        # Output URLs point at storage (signed URLs on GCS): fetch them without the API key,
        # which must never leave for another host.
        self._storage = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            transport=storage_transport,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()
        self._storage.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: Retry | None = None,
    ) -> httpx.Response:
        """Send one API request; raise the matching `ApiError` for an error status.

        `retry` says what is retried (up to `max_retries` times, honouring `Retry-After`):
        "all" (the default for GET) retries 503s and network failures; "network" only network
        failures, where the request may never have arrived; "none" nothing."""
        policy = retry or ("all" if method == "GET" else "none")
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._http.request(method, path, params=params, json=json, headers=headers)
            except httpx.TimeoutException as exc:
                failure: GpupipeError = NetworkError(f"{method} {self.api_url}{path} timed out ({type(exc).__name__})")
                retryable = policy != "none"
            except httpx.TransportError as exc:
                failure = NetworkError(f"cannot reach the gpupipe API at {self.api_url}: {exc or type(exc).__name__}")
                retryable = policy != "none"
            else:
                if response.status_code < 400:
                    return response
                failure = error_from_response(
                    response.status_code, _maybe_json(response), response.headers.get("Retry-After")
                )
                retryable = policy == "all" and isinstance(failure, Unavailable)
                wait = failure.retry_after
            if not retryable or attempt >= self._max_retries:
                raise failure
            attempt += 1
            self._sleep(min(wait if wait is not None else 0.5 * 2**attempt, self._max_retry_wait))

    def fetch_to(self, url: str, path: Path, *, what: str) -> None:
        """Stream `url` into `path` (through a `.part` file, so a failed fetch leaves nothing);
        `what` names the thing in errors."""
        # A URL on the API's own origin is served by the API and needs the key; any other is storage.
        same_origin = httpx.URL(url).is_relative_url or _origin(url) == _origin(self.api_url)
        http = self._http if same_origin else self._storage
        partial = path.with_name(f".{path.name}.part")
        try:
            with http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    error = error_from_response(response.status_code, _maybe_json(response), None)
                    error.message = f"cannot fetch {what}: HTTP {response.status_code} from {_origin(url)}"
                    raise error
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
            os.replace(partial, path)
        except httpx.TransportError as exc:
            raise NetworkError(f"cannot fetch {what} from {_origin(url)}: {exc or type(exc).__name__}") from exc
        finally:
            partial.unlink(missing_ok=True)


def response_object(response: httpx.Response) -> dict[str, Any]:
    """The body of a response as a JSON object; anything else is an `ApiError` (`bad_response`)."""
    body = _maybe_json(response)
    if not isinstance(body, dict):
        raise ApiError(
            f"the API answered HTTP {response.status_code} without a JSON object",
            code="bad_response",
            status=response.status_code,
        )
    return body


def parse_result(build: Callable[[Mapping[str, Any]], R], data: Any) -> R:
    """A typed result from decoded JSON; a body that does not fit the contract is an `ApiError`."""
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = getattr(build, "__qualname__", "object").split(".")[0]
        raise ApiError(
            f"the API sent a malformed {what} object ({type(exc).__name__}: {exc})", code="bad_response"
        ) from exc


def path_segment(value: str) -> str:
    """A path segment: ids are quoted so that no id can reach another route."""
    if not value or value in (".", ".."):
        raise ValueError(f"not a valid id: {value!r}")
    return quote(value, safe="")


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _maybe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
