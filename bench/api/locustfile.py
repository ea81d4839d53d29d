"""Locust load for the job API: every simulated client submits jobs as fast as it can.

    GPUPIPE_API_KEYS=key1,key2 locust -f bench/api/locustfile.py --host http://127.0.0.1:PORT

`bench/api/run.py` starts everything this needs and runs it headless."""

from __future__ import annotations

import functools
import itertools
import os
import random
from collections.abc import Iterator

from locust import FastHttpUser, constant, task


@functools.cache
def _keys() -> Iterator[str]:
    """The accounts' keys in turn, from the environment locust was started with (read on first use)."""
    return itertools.cycle(os.environ.get("GPUPIPE_API_KEYS", os.environ.get("GPUPIPE_API_KEY", "")).split(","))


class Submitter(FastHttpUser):
    """Simulated users take the accounts' keys in turn."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {next(_keys())}"}

    @task
    def submit(self) -> None:
        body = {"prompt": f"bench {random.random()}", "width": 64, "height": 64, "num_inference_steps": 2}
        with self.client.post(
            "/v1/jobs", json=body, headers=self.headers, name="POST /v1/jobs", catch_response=True
        ) as r:
            if r.status_code != 202:
                r.failure(f"status {r.status_code}: {r.text[:200]}")
