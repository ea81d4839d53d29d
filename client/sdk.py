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

`Client` composes the parts: `client.connection` (HTTP, retries, error mapping, decoding),
`client.polling` (bounded waits) and `client.batch_upload` (batch files into the inbox bucket).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from client.batch_upload import BatchUpload, upload_batch_file
from client.connection import USER_AGENT as USER_AGENT
from client.connection import ApiConnection, R, Retry, parse_result, path_segment, response_object
from client.errors import ApiError
from client.errors import GpupipeError as GpupipeError
from client.errors import NetworkError as NetworkError
from client.errors import NotFound as NotFound
from client.errors import RateLimited as RateLimited
from client.errors import Unavailable as Unavailable
from client.errors import WaitTimeout as WaitTimeout
from client.errors import error_from_response as error_from_response
from client.polling import poll_until
from client.resources import Batch, Job, JobPage, Model, Usage

if TYPE_CHECKING:
    from core.ports import BlobStore
    from core.settings import Settings

__all__ = ["BatchUpload", "Client", "upload_batch_file"]
# The `name as name` imports above are re-exports: those names were importable from here before
# the SDK was split into `connection`, `polling` and `batch_upload`, so callers need not change.


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
        self._sleep = sleep
        self._clock = clock
        self._api = ApiConnection(
            self.api_url,
            api_key,
            timeout=timeout,
            transport=transport,
            storage_transport=storage_transport,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            sleep=sleep,
        )

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._api.close()

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
        response = self._api.request(
            "POST", "/v1/jobs", json=body, headers=headers, retry="network" if idempotency_key else "none"
        )
        return parse_result(Job.from_dict, response_object(response))

    def get(self, job_id: str) -> Job:
        return self._call(Job.from_dict, "GET", f"/v1/jobs/{path_segment(job_id)}")

    def list(
        self, *, status: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> JobPage:
        """One page of the caller's jobs, newest first."""
        params = {k: v for k, v in {"status": status, "page_size": page_size, "page_token": page_token}.items() if v}
        data = response_object(self._api.request("GET", "/v1/jobs", params=params))
        return JobPage(
            jobs=[parse_result(Job.from_dict, j) for j in data.get("jobs") or []],
            next_page_token=data.get("next_page_token"),
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
        return self._call(Job.from_dict, "POST", f"/v1/jobs/{path_segment(job_id)}:cancel")

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
        return poll_until(
            lambda: self._get_job_once(job_id),
            describe=f"job {job_id}",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_progress=on_progress,
            changed=lambda a, b: (a.status, a.progress) != (b.status, b.progress),
            done=lambda job: job.terminal,
            tolerate_not_found=False,
            sleep=self._sleep,
            clock=self._clock,
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
            self._api.fetch_to(output.url, path, what=f"output {output.index} of job {job.id}")
            paths.append(path)
        return paths

    # ------------------------------------------------------------------ account, models, batches
    def usage(self) -> Usage:
        return self._call(Usage.from_dict, "GET", "/v1/usage")

    def models(self) -> builtins.list[Model]:
        data = response_object(self._api.request("GET", "/v1/models"))
        return [parse_result(Model.from_dict, m) for m in data.get("models") or []]

    def batch(self, batch_id: str) -> Batch:
        return self._call(Batch.from_dict, "GET", f"/v1/batches/{path_segment(batch_id)}")

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
        return poll_until(
            lambda: self._call(Batch.from_dict, "GET", f"/v1/batches/{path_segment(batch_id)}", retry="none"),
            describe=f"batch {batch_id}",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_progress=on_progress,
            changed=lambda a, b: (a.status, a.jobs) != (b.status, b.jobs),
            done=lambda batch: batch.terminal,
            tolerate_not_found=True,
            sleep=self._sleep,
            clock=self._clock,
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
        return self._call(Job.from_dict, "GET", f"/v1/jobs/{path_segment(job_id)}", retry="none")

    def _call(
        self, build: Callable[[Mapping[str, Any]], R], method: str, path: str, *, retry: Retry | None = None
    ) -> R:
        """One request whose answer is one typed object."""
        return parse_result(build, response_object(self._api.request(method, path, retry=retry)))
