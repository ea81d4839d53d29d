"""The chaos run's audit, from outside: what the API, the outputs bucket and usage say once the
faults are over (see `bench.chaos.driver`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from client.errors import NetworkError, RateLimited, Unavailable, WaitTimeout
from client.sdk import Client, Job
from emulators.stack import RunningStack


@dataclass
class ChaosResult:
    jobs: int = 0
    worker_kills: int = 0
    api_kills: int = 0
    upload_kills: int = 0
    terminal: int = 0
    percent_terminal: float = 0.0
    seconds_last_fault_to_all_terminal: float | None = None
    p50_latency_seconds: float = 0.0
    p99_latency_seconds: float = 0.0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    duplicate_outputs: int = 0
    rewritten_outputs: int = 0
    stranded: int = 0
    usage_mismatches: int = 0
    counters_not_zero: int = 0
    batch_completed: bool = False
    batch_jobs_at_kill: int | None = None
    baseline_seconds: float = 0.0
    after_p50_seconds: float = 0.0
    after_max_seconds: float = 0.0
    run_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        values["problems"] = "; ".join(self.problems)[:500]
        return values


@dataclass(frozen=True)
class User:
    user_id: str
    api_key: str


class Audit:
    def __init__(
        self,
        stack: RunningStack,
        users: list[User],
        result: ChaosResult,
        batch: tuple[User, str] | None,
        client: Callable[[User], Client],
    ) -> None:
        self.stack = stack
        self.users = users
        self.result = result
        self.batch = batch
        self._client = client

    def all_jobs(self) -> dict[str, tuple[User, Job]]:
        jobs: dict[str, tuple[User, Job]] = {}
        for user in self.users:
            with self._client(user) as client:
                for job in retrying(lambda c=client: list(c.iter_jobs(page_size=100))):
                    jobs[job.id] = (user, job)
        return jobs

    def run(self) -> None:
        jobs = self.all_jobs()
        result = self.result
        terminal = [j for _, j in jobs.values() if j.terminal]
        result.terminal = len(terminal)
        result.percent_terminal = round(100.0 * len(terminal) / max(1, len(jobs)), 2)
        for status in ("succeeded", "failed", "cancelled"):
            setattr(result, status, sum(1 for j in terminal if j.status == status))
        latencies = sorted(
            (j.completed_at - j.created_at).total_seconds()
            for j in terminal
            if j.completed_at is not None and j.created_at is not None
        )
        if latencies:
            result.p50_latency_seconds = round(statistics.median(latencies), 2)
            result.p99_latency_seconds = round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)
        for job in terminal:
            if job.status == "failed":
                result.problems.append(f"job {job.id} failed: {job.error}")
        result.problems[:] = result.problems[:20]
        self._outputs_once(jobs)
        self._usage(jobs)
        self._batch()

    def _outputs(self) -> dict[str, int]:
        blobs = self.stack.suite.backends.blobs
        bucket = self.stack.settings.names.outputs_bucket
        return {b.name: b.generation for user in self.users for b in blobs.list(bucket, f"{user.user_id}/jobs/")}

    def _outputs_once(self, jobs: Mapping[str, tuple[User, Job]]) -> None:
        first = self._outputs()
        time.sleep(5)  # anything still writing (a worker that lost its claim) would show now
        second = self._outputs()
        self.result.rewritten_outputs = sum(1 for name, gen in first.items() if second.get(name, gen) != gen)
        per_job: dict[str, int] = {}
        for name in second:
            job_id = name.split("/")[2]
            per_job[job_id] = per_job.get(job_id, 0) + 1
        for job_id, count in per_job.items():
            known = jobs.get(job_id)
            images = int(known[1].input.get("num_images", 1)) if known else 0
            if count > images or (known and known[1].status == "succeeded" and len(known[1].outputs) != count):
                self.result.duplicate_outputs += 1
                self.result.problems.append(f"job {job_id} has {count} output objects for {images} images")

    def _usage(self, jobs: Mapping[str, tuple[User, Job]]) -> None:
        for user in self.users:
            with self._client(user) as client:
                usage = retrying(client.usage)
            terminal = sum(1 for u, j in jobs.values() if u.user_id == user.user_id and j.terminal)
            if usage.jobs != terminal:
                self.result.usage_mismatches += 1
                self.result.problems.append(
                    f"user {user.user_id}: {usage.jobs} usage records, {terminal} terminal jobs"
                )
            active = int(usage.raw.get("active_jobs", 0))
            if active != 0:
                self.result.counters_not_zero += 1
                self.result.problems.append(f"user {user.user_id}: active_jobs is {active}")

    def _batch(self) -> None:
        if self.batch is None:
            self.result.batch_completed = True
            return
        user, batch_id = self.batch
        with self._client(user) as client:
            try:
                batch = retrying(lambda: client.wait_batch(batch_id, timeout=30, poll_interval=0.5))
            except WaitTimeout as exc:
                self.result.problems.append(f"batch {batch_id}: {exc}")
                return
        blobs = self.stack.suite.backends.blobs
        bucket = self.stack.settings.names.outputs_bucket
        summaries = blobs.list(bucket, f"{user.user_id}/batches/{batch_id}/summary.json")
        self.result.batch_completed = batch.status == "completed" and len(summaries) == 1
        if not self.result.batch_completed:
            self.result.problems.append(f"batch {batch_id} is {batch.status} with {len(summaries)} summaries")


def retrying(call: Callable[[], Any], *, attempts: int = 120) -> Any:
    """Retry through what a fault makes a client see: a dead api (network errors), 503s and 429s.
    Waits what `Retry-After` says (at most 2 s: the faults are short), else backs off to 2 s."""
    for attempt in range(attempts):
        try:
            return call()
        except (NetworkError, Unavailable, RateLimited) as exc:
            if attempt + 1 == attempts:
                raise
            retry_after = getattr(exc, "retry_after", None)
            time.sleep(min(2.0, retry_after if retry_after else 0.2 * (attempt + 1)))
    raise AssertionError("unreachable")
