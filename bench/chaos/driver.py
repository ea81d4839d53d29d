"""A chaos run against a live local stack: load through the public surfaces while processes die.

What happens, in this order (`run(stack, config, environ)`):
1. users are created with `gpupipe admin create-user`; one job on the fresh stack gives the
   baseline latency;
2. `config.jobs` HTTP jobs are submitted by concurrent clients (with Idempotency-Keys, retrying
   through 429s, 503s and a dead `api` process), while
   - a random worker is SIGKILLed every `kill_interval` seconds and replaced at once,
   - the `api` process is SIGKILLed under load and started again,
   - a `upload_lines`-line upload is written to the inbox and `on_upload` is SIGKILLed as soon as
     its batch exists (mid-ingest), then started again;
3. after the last fault, it waits (bounded) for every job of every user, listed through the
   API, to be terminal, then submits `after_jobs` more and times them;
4. the audit, from outside: per-status counts; output objects per job (never more than its
   images, none written again later); `GET /v1/usage` per user (usage records = terminal jobs,
   `active_jobs` back to 0); the upload's batch completed with one summary.json.

The result is a `ChaosResult` (a CSV row); `tests/chaos` asserts on a small one, `make chaos`
runs the large one (`python -m bench.chaos`).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos.audit import Audit, ChaosResult, User, retrying
from client.errors import ApiError
from client.sdk import Client
from core.batches import batch_id_for
from emulators.stack import RunningStack

log = logging.getLogger(__name__)

JOB = {"width": 64, "height": 64, "num_inference_steps": 20}
# Which worker dies when, and the submitters' pauses: the same sequence every run.
_SEED = 7


@dataclass(frozen=True)
class ChaosConfig:
    """The load: `jobs` HTTP jobs from `users` users through `submitters` concurrent clients, one
    upload of `upload_lines` lines, and `after_jobs` timed jobs once the faults are over. The
    faults: `worker_kills` worker SIGKILLs, one every `kill_interval` seconds (±30 %, each worker
    replaced at once, never the last one alive), `api_kills` of the api process under load and
    `upload_kills` (0 or 1) of on_upload mid-ingest. `bound_seconds` is the contract: every
    accepted job terminal this long after the last fault."""

    jobs: int = 60
    users: int = 5
    submitters: int = 6
    upload_lines: int = 50
    after_jobs: int = 5

    worker_kills: int = 6
    kill_interval: float = 10.0
    api_kills: int = 1
    upload_kills: int = 1
    bound_seconds: float = 120.0


class _Run:
    def __init__(self, stack: RunningStack, config: ChaosConfig, environ: Mapping[str, str]) -> None:
        self.stack = stack
        self.config = config
        self.environ = dict(environ)
        self.rng = random.Random(_SEED)
        self.result = ChaosResult()
        self.users: list[User] = []
        self.last_fault = time.monotonic()
        self.submitting = threading.Event()
        self.replacements: list[concurrent.futures.Future[Any]] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="chaos-replace")
        self.batch: tuple[User, str] | None = None
        self.stack_lock = threading.Lock()

    # ------------------------------------------------------------------ the run
    def run(self) -> ChaosResult:
        began = time.monotonic()
        self.users = [self._create_user(f"chaos{n}") for n in range(self.config.users)]
        self.result.baseline_seconds = round(self._timed_jobs(1)[0], 3)
        faults = threading.Thread(target=self._faults, name="chaos-faults")
        self.submitting.set()
        faults.start()
        self._submit_all()
        self.submitting.clear()
        faults.join()
        for future in self.replacements:
            future.result(timeout=300)
        self._wait_all_terminal()
        if self.result.stranded == 0:
            after = self._timed_jobs(self.config.after_jobs)
            self.result.after_p50_seconds = round(statistics.median(after), 3)
            self.result.after_max_seconds = round(max(after), 3)
        self._audit().run()
        self.result.run_seconds = round(time.monotonic() - began, 1)
        self.pool.shutdown(wait=True)
        return self.result

    # ------------------------------------------------------------------ users and clients
    def _create_user(self, name: str) -> User:
        gpupipe = Path(sys.executable).with_name("gpupipe")
        argv = [str(gpupipe)] if gpupipe.is_file() else [sys.executable, "-m", "client.cli"]
        done = subprocess.run(
            [
                *argv,
                "admin",
                "create-user",
                name,
                "--json",
                "--max-concurrent-jobs",
                "40",
                "--requests-per-minute",
                "600",
            ],
            env={**self.environ, **self.stack.env()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"gpupipe admin create-user failed: {done.stderr}")
        created = json.loads(done.stdout)
        return User(created["user_id"], created["api_key"])

    def _client(self, user: User) -> Client:
        return Client(self.stack.api_url, user.api_key, timeout=20, max_retries=0)

    def _timed_jobs(self, count: int) -> list[float]:
        """Submit `count` jobs at once and return each one's submit-to-terminal seconds."""
        user = self.users[0]

        def one(n: int) -> float:
            with self._client(user) as client:
                started = time.monotonic()
                job = retrying(lambda: client.submit({**JOB, "prompt": f"timed {n}"}, idempotency_key=uuid.uuid4().hex))
                done = retrying(lambda: client.wait(job.id, timeout=300, poll_interval=0.1, max_poll_interval=0.5))
                if done.status != "succeeded":
                    self.result.problems.append(f"timed job {job.id} ended {done.status}")
                return time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, count)) as pool:
            return list(pool.map(one, range(count)))

    def _submit_all(self) -> None:
        queue = list(range(self.config.jobs))
        lock = threading.Lock()

        def submitter() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    n = queue.pop()
                user = self.users[n % len(self.users)]
                with self._client(user) as client:
                    key = uuid.uuid4().hex
                    body = {**JOB, "prompt": f"chaos job {n}", "seed": n}
                    retrying(lambda c=client, b=body, k=key: c.submit(b, idempotency_key=k))
                time.sleep(self.rng.uniform(0.0, 0.2))

        threads = [threading.Thread(target=submitter, name=f"chaos-submit-{i}") for i in range(self.config.submitters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.result.jobs += self.config.jobs

    # ------------------------------------------------------------------ faults
    def _faults(self) -> None:
        """Worker kills every `kill_interval`; the api kills and the upload spread among them."""
        config = self.config
        kinds = ["worker"] * config.worker_kills + ["api"] * config.api_kills
        self.rng.shuffle(kinds)
        if config.upload_kills:
            kinds.insert(min(1, len(kinds)), "upload")
        for index, kind in enumerate(kinds):
            if index:
                time.sleep(config.kill_interval * self.rng.uniform(0.7, 1.3))
            if kind == "worker":
                self._kill_worker()
            elif kind == "api":
                self._kill_function("api")
                self.result.api_kills += 1
            else:
                self._upload_and_kill()
            self.last_fault = time.monotonic()

    def _kill_worker(self) -> None:
        """SIGKILL a random worker, but never the last one alive (the contract's condition): wait,
        bounded, for a replacement to be ready first."""
        deadline = time.monotonic() + 300
        while True:
            with self.stack_lock:
                alive = [w for w in self.stack.workers if w.running()]
                if len(alive) >= 2 or time.monotonic() > deadline:
                    break
            time.sleep(0.5)
        with self.stack_lock:
            if not alive:
                self.result.problems.append("no worker alive to kill")
                return
            victim = self.rng.choice(alive)
            self.stack.kill(victim.name)
            self.stack.forget_dead_workers()
        self.result.worker_kills += 1
        log.info("chaos: killed %s", victim.name)
        self.replacements.append(self.pool.submit(self._replace_worker))

    def _replace_worker(self) -> None:
        # Not under the stack lock while it warms up: kills go on meanwhile.
        self.stack.add_worker(self.environ, timeout=240)

    def _kill_function(self, name: str) -> None:
        with self.stack_lock:
            self.stack.kill(name)
            log.info("chaos: killed %s", name)
            self.stack.restart_function(name, self.environ)

    def _upload_and_kill(self) -> None:
        """Write a JSON-lines file to a user's inbox folder and SIGKILL `on_upload` as soon as its
        batch exists: the ingest is then under way."""
        user = self.users[-1]
        lines = "".join(
            json.dumps({**JOB, "prompt": f"batch line {n}", "seed": 1000 + n}) + "\n"
            for n in range(self.config.upload_lines)
        )
        bucket = self.stack.settings.names.inbox_bucket
        name = f"{user.user_id}/chaos-{uuid.uuid4().hex[:8]}.jsonl"
        info = self.stack.suite.backends.blobs.write(bucket, name, lines.encode(), content_type="application/x-ndjson")
        batch_id = batch_id_for(bucket, name, info.generation)
        self.batch = (user, batch_id)
        self.result.jobs += self.config.upload_lines
        with self._client(user) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    client.batch(batch_id)
                    break
                except ApiError:
                    time.sleep(0.02)
        self._kill_function("on_upload")
        self.result.upload_kills += 1
        with self._client(user) as client:
            self.result.batch_jobs_at_kill = sum(1 for j in client.iter_jobs(page_size=100) if j.batch_id == batch_id)

    # ------------------------------------------------------------------ waiting and auditing
    def _audit(self) -> Audit:
        return Audit(self.stack, self.users, self.result, self.batch, self._client)

    def _wait_all_terminal(self) -> None:
        deadline = self.last_fault + self.config.bound_seconds
        while True:
            jobs = self._audit().all_jobs()
            pending = [j for _, j in jobs.values() if not j.terminal]
            if not pending:
                self.result.seconds_last_fault_to_all_terminal = round(time.monotonic() - self.last_fault, 1)
                return
            if time.monotonic() > deadline:
                self.result.stranded = len(pending)
                states = sorted({f"{j.status}" for j in pending})
                self.result.problems.append(
                    f"{len(pending)} jobs not terminal {self.config.bound_seconds:.0f} s after the last fault "
                    f"({', '.join(states)}): {[j.id for j in pending[:5]]}"
                )
                return
            time.sleep(1.0)


def run(stack: RunningStack, config: ChaosConfig, environ: Mapping[str, str]) -> ChaosResult:
    """One chaos run on a started stack (it keeps running afterwards)."""
    return _Run(stack, config, environ).run()
