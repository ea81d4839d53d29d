"""Submit one job to a deployed gpupipe API and wait for it: the last step of a deploy.

Exits 0 when the job succeeds and its first image can be fetched; 1 with the reason otherwise
(API unhealthy, request refused, job failed or cancelled, deadline passed). Every wait is
bounded by --timeout.

    python -m ops.smoke_test --api-url URL --api-key KEY [--timeout 900] [--run-id BUILD_ID]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Small enough to be quick on an L4, large enough to go through the real model path.
SMOKE_REQUEST: dict[str, Any] = {
    "prompt": "gpupipe smoke test: a lighthouse on a cliff at dusk",
    "width": 256,
    "height": 256,
    "num_inference_steps": 10,
    "num_images": 1,
    "seed": 1234,
    "output_format": "png",
}


class SmokeFailure(Exception):
    """The deployment did not pass; the message says at which step and why."""


@dataclass(frozen=True)
class SmokeResult:
    job_id: str
    seconds: float
    output_url: str


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


def run(
    api_url: str,
    api_key: str,
    *,
    timeout: float = 900.0,
    poll_seconds: float = 5.0,
    run_id: str | None = None,
    session: requests.Session | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    http = session or requests.Session()
    base = api_url.rstrip("/")
    start = clock()
    deadline = start + timeout

    def remaining() -> float:
        left = deadline - clock()
        if left <= 0:
            raise SmokeFailure(f"deadline of {timeout:.0f}s passed")
        return left

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return http.request(method, url, timeout=min(30.0, remaining()), **kwargs)
        except requests.RequestException as exc:
            raise SmokeFailure(f"{method} {url}: {exc}") from None

    health = request("GET", f"{base}/healthz")
    if health.status_code != 200:
        raise SmokeFailure(f"GET /healthz: {_error_text(health)}")

    headers = {"Authorization": f"Bearer {api_key}"}
    submit_headers = dict(headers)
    body = dict(SMOKE_REQUEST)
    if run_id:
        submit_headers["Idempotency-Key"] = f"smoke-{run_id}"
        body["metadata"] = {"smoke_run": run_id}
    while True:
        submitted = request("POST", f"{base}/v1/jobs", json=body, headers=submit_headers)
        if submitted.status_code in (429, 503):
            wait = float(submitted.headers.get("Retry-After", poll_seconds))
            sleep(min(wait, remaining()))
            continue
        if submitted.status_code != 202:
            raise SmokeFailure(f"POST /v1/jobs: {_error_text(submitted)}")
        break
    job = submitted.json()
    job_id = job["id"]

    while job["status"] not in TERMINAL:
        sleep(min(poll_seconds, remaining()))
        polled = request("GET", f"{base}/v1/jobs/{job_id}", headers=headers)
        if polled.status_code != 200:
            raise SmokeFailure(f"GET /v1/jobs/{job_id}: {_error_text(polled)}")
        job = polled.json()

    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise SmokeFailure(f"job {job_id} {job['status']}: {error.get('code')}: {error.get('message')}")
    outputs = job.get("outputs") or []
    if not outputs:
        raise SmokeFailure(f"job {job_id} succeeded without outputs")
    image = request("GET", outputs[0]["url"])
    if image.status_code != 200 or not image.content:
        raise SmokeFailure(f"output {outputs[0]['uri']} could not be fetched: {image.status_code}")
    return SmokeResult(job_id=job_id, seconds=round(clock() - start, 1), output_url=outputs[0]["url"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole test")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between status checks")
    parser.add_argument("--run-id", default=None, help="makes the submit idempotent (e.g. the build id)")
    args = parser.parse_args(argv)
    try:
        result = run(args.api_url, args.api_key, timeout=args.timeout, poll_seconds=args.poll, run_id=args.run_id)
    except SmokeFailure as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed: job {result.job_id} succeeded in {result.seconds}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
