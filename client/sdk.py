"""The gpupipe Python SDK: a thin, typed client of the v1 HTTP API.

    from client.sdk import Client

    with Client("http://127.0.0.1:8080", api_key) as gp:
        job = gp.submit(prompt="a lighthouse at dusk", width=64, height=64)
        job = gp.wait(job.id, timeout=120, on_progress=lambda j: print(j.status, j.progress))
        paths = gp.download(job, "out/")

Every call either returns a typed result (`Job`, `Batch`, `Usage`, ...) or raises a
`client.errors.GpupipeError`. Reads (GET) are retried a few times when the API is unavailable
or unreachable, honouring `Retry-After`. A submit is retried only after a network failure and
only when it carries an `Idempotency-Key`: then a replay returns the job the lost request may
have created instead of making a second one. A 503 on submit is not retried (the API fails that
job; submit again with a new key). Waits are always
bounded and back off while nothing changes.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from client.errors import (
    ApiError,
    GpupipeError,
    NetworkError,
    NotFound,
    RateLimited,
    Unavailable,
    WaitTimeout,
    error_from_response,
)
from client.resources import Batch, Job, JobPage, Model, Usage

if TYPE_CHECKING:
    from core.ports import BlobStore
    from core.settings import Settings

__all__ = ["BatchUpload", "Client", "upload_batch_file"]

USER_AGENT = "gpupipe-sdk/0.1"
T = TypeVar("T")
R = TypeVar("R")
Retry = Literal["all", "network", "none"]


class Client:
    """A client of one gpupipe API for one API key.

    `transport` replaces httpx's network transport (tests pass `httpx.WSGITransport(app=...)`);
    `storage_transport` does the same for fetching output images from storage. `sleep` and
    `clock` exist so that tests can drive waits without waiting.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        storage_transport: httpx.BaseTransport | None = None,
        max_retries: int = 2,
        max_retry_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_url:
            raise ValueError("api_url is required (for example http://127.0.0.1:8080)")
        if not api_key:
            raise ValueError("api_key is required")
        self.api_url = api_url.rstrip("/")
        self._max_retries = max(0, max_retries)
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.api_url,
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

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._http.close()
        self._storage.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        request: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Submit a job: `submit(prompt="...", width=64)` or `submit({"prompt": ...})` (keyword
        fields override the dict's). With `idempotency_key`, resubmitting the same body returns
        the same job and a different body raises `Conflict`."""
        body = {**(request or {}), **fields}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request(
            "POST", "/v1/jobs", json=body, headers=headers, retry="network" if idempotency_key else "none"
        )
        return _parse(Job.from_dict, self._json(response))

    def get(self, job_id: str) -> Job:
        return _parse(Job.from_dict, self._json(self._request("GET", f"/v1/jobs/{_segment(job_id)}")))

    def list(
        self, *, status: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> JobPage:
        """One page of the caller's jobs, newest first."""
        params = {k: v for k, v in {"status": status, "page_size": page_size, "page_token": page_token}.items() if v}
        data = self._json(self._request("GET", "/v1/jobs", params=params))
        return JobPage(
            jobs=[_parse(Job.from_dict, j) for j in data.get("jobs") or []], next_page_token=data.get("next_page_token")
        )

    def iter_jobs(self, *, status: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job of the caller, newest first, fetching pages as it goes."""
        token: str | None = None
        while True:
            page = self.list(status=status, page_size=page_size, page_token=token)
            yield from page.jobs
            if not page.next_page_token:
                return
            token = page.next_page_token

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; `Conflict` if it already finished."""
        return _parse(Job.from_dict, self._json(self._request("POST", f"/v1/jobs/{_segment(job_id)}:cancel")))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is terminal and return it, whether it succeeded or not.

        `on_progress(job)` is called with the first state seen and with every change of status or
        progress. Polls back off from `poll_interval` to `max_poll_interval` while nothing changes;
        a 429 or 503 waits as long as its `Retry-After` says. Raises `WaitTimeout` (with the last
        job seen) after `timeout` seconds, and `NotFound` at once for an unknown id."""
        return self._poll(
            lambda: self._get_job_once(job_id),
            describe=f"job {job_id}",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_progress=on_progress,
            changed=lambda a, b: (a.status, a.progress) != (b.status, b.progress),
            done=lambda job: job.terminal,
            tolerate_not_found=False,
        )

    def download(self, job: Job | str, dest_dir: str | os.PathLike[str]) -> builtins.list[Path]:
        """Fetch every output of a job into `dest_dir` as `<job_id>-<index>.<ext>`; return the
        paths. Accepts a job or its id (then it is fetched first). A job with no outputs (not
        finished, failed, cancelled) downloads nothing."""
        if isinstance(job, str):
            job = self.get(job)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for output in job.outputs:
            if not output.url:
                raise ApiError(f"output {output.index} of job {job.id} has no fetchable url", code="bad_response")
            path = dest / f"{job.id}-{output.index}.{output.extension}"
            self._fetch_to(output.url, path, what=f"output {output.index} of job {job.id}")
            paths.append(path)
        return paths

    # ------------------------------------------------------------------ account, models, batches
    def usage(self) -> Usage:
        return _parse(Usage.from_dict, self._json(self._request("GET", "/v1/usage")))

    def models(self) -> builtins.list[Model]:
        data = self._json(self._request("GET", "/v1/models"))
        return [_parse(Model.from_dict, m) for m in data.get("models") or []]

    def batch(self, batch_id: str) -> Batch:
        return _parse(Batch.from_dict, self._json(self._request("GET", f"/v1/batches/{_segment(batch_id)}")))

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout: float = 1800.0,
        poll_interval: float = 2.0,
        max_poll_interval: float = 15.0,
        on_progress: Callable[[Batch], None] | None = None,
    ) -> Batch:
        """Poll until every job of the batch is terminal (or the upload was rejected). A batch
        that does not exist yet is waited for too: the upload trigger creates it moments after
        the file lands. Raises `WaitTimeout` after `timeout` seconds."""
        return self._poll(
            lambda: _parse(
                Batch.from_dict, self._json(self._request("GET", f"/v1/batches/{_segment(batch_id)}", retry="none"))
            ),
            describe=f"batch {batch_id}",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_progress=on_progress,
            changed=lambda a, b: (a.status, a.jobs) != (b.status, b.jobs),
            done=lambda batch: batch.terminal,
            tolerate_not_found=True,
        )

    def upload_batch(
        self,
        path: str | os.PathLike[str],
        user_id: str,
        *,
        settings: Settings | None = None,
        bucket: str | None = None,
        blobs: BlobStore | None = None,
        name: str | None = None,
    ) -> str:
        """Upload a JSON-lines file of job requests to `gs://<inbox>/<user_id>/<name>.jsonl` and
        return the id of the batch the upload trigger will make of it (see `upload_batch_file`)."""
        return upload_batch_file(path, user_id, settings=settings, bucket=bucket, blobs=blobs, name=name).batch_id

    # ------------------------------------------------------------------ plumbing
    def _get_job_once(self, job_id: str) -> Job:
        return _parse(Job.from_dict, self._json(self._request("GET", f"/v1/jobs/{_segment(job_id)}", retry="none")))

    def _poll(
        self,
        fetch: Callable[[], T],
        *,
        describe: str,
        timeout: float,
        poll_interval: float,
        max_poll_interval: float,
        on_progress: Callable[[T], None] | None,
        changed: Callable[[T, T], bool],
        done: Callable[[T], bool],
        tolerate_not_found: bool,
        max_consecutive_errors: int = 5,
    ) -> T:
        deadline = self._clock() + timeout
        interval = poll_interval
        last: T | None = None
        errors = 0
        while True:
            try:
                current = fetch()
            except NotFound:
                if not tolerate_not_found:
                    raise
                pause = interval
            except (RateLimited, Unavailable, NetworkError) as exc:
                errors += 1
                if errors > max_consecutive_errors:
                    raise
                retry_after = getattr(exc, "retry_after", None)
                pause = retry_after if retry_after is not None else interval
                interval = min(interval * 2, max_poll_interval)
            else:
                errors = 0
                is_new = last is None or changed(last, current)
                last = current
                if is_new and on_progress is not None:
                    on_progress(current)
                if done(current):
                    return current
                interval = poll_interval if is_new else min(interval * 1.5, max_poll_interval)
                pause = interval
            remaining = deadline - self._clock()
            if remaining <= 0:
                seen = "never found" if last is None else "not finished"
                raise WaitTimeout(f"{describe} {seen} after {timeout:g}s", last=last)
            self._sleep(min(pause, remaining))

    def _request(
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

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        body = _maybe_json(response)
        if not isinstance(body, dict):
            raise ApiError(
                f"the API answered HTTP {response.status_code} without a JSON object",
                code="bad_response",
                status=response.status_code,
            )
        return body

    def _fetch_to(self, url: str, path: Path, *, what: str) -> None:
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


@dataclass(frozen=True)
class BatchUpload:
    """A file placed in the inbox bucket, and the batch it becomes."""

    batch_id: str
    bucket: str
    name: str
    generation: int

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def upload_batch_file(
    path: str | os.PathLike[str],
    user_id: str,
    *,
    settings: Settings | None = None,
    bucket: str | None = None,
    blobs: BlobStore | None = None,
    name: str | None = None,
) -> BatchUpload:
    """Write a JSON-lines file to `gs://<inbox>/<user_id>/<name>.jsonl`, as `gcloud storage cp`
    would, and say which batch it becomes.

    This goes to storage directly, not through the API: it needs storage credentials (or the
    emulator), not an API key. `settings` names the inbox bucket and the storage backend;
    `bucket` and `blobs` override them. `name` defaults to the file's name without `.jsonl`.
    The batch id is derived from bucket, object name and the new generation exactly as the
    upload trigger derives it. Raises `ValueError` or `OSError` for a bad user id or file."""
    from core.batches import batch_id_for
    from core.users import USER_ID_PATTERN

    if not USER_ID_PATTERN.match(user_id):
        raise ValueError(f"user id {user_id!r} is not valid: lowercase letters, digits and '-', 2 to 63 of them")
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    data = source.read_bytes()
    if settings is not None and len(data) > settings.request_limits.max_upload_bytes:
        raise ValueError(
            f"{source} is {len(data)} bytes; uploads are limited to {settings.request_limits.max_upload_bytes}"
        )
    target_bucket = bucket or (settings.names.inbox_bucket if settings is not None else None)
    if target_bucket is None:
        raise ValueError("uploading a batch needs settings or a bucket")
    if blobs is None:
        if settings is None:
            raise ValueError("uploading a batch needs settings (or a blob store) to reach storage")
        from adapters.bootstrap import bootstrap

        blobs = bootstrap(settings).blobs
    stem = name or source.name.removesuffix(".jsonl")
    object_name = f"{user_id}/{stem}.jsonl"
    from core.ports import AdapterError

    try:
        info = blobs.write(target_bucket, object_name, data, content_type="application/x-ndjson")
    except AdapterError as exc:
        raise NetworkError(f"cannot upload to gs://{target_bucket}/{object_name}: {exc}") from exc
    return BatchUpload(
        batch_id=batch_id_for(target_bucket, object_name, info.generation),
        bucket=target_bucket,
        name=object_name,
        generation=info.generation,
    )


def _segment(value: str) -> str:
    """A path segment: ids are quoted so that no id can reach another route."""
    if not value or value in (".", ".."):
        raise ValueError(f"not a valid id: {value!r}")
    return quote(value, safe="")


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _parse(build: Callable[[Mapping[str, Any]], R], data: Any) -> R:
    """A typed result from decoded JSON; a body that does not fit the contract is an `ApiError`."""
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = getattr(build, "__qualname__", "object").split(".")[0]
        raise ApiError(
            f"the API sent a malformed {what} object ({type(exc).__name__}: {exc})", code="bad_response"
        ) from exc


def _maybe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
