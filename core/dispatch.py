"""How many GPU workers to start, given the jobs backlog and the workers already running.

Cloud Run workers are executions of a job that exit when idle; something must start them when
work arrives. The dispatch function (functions/dispatch.py) calls `Dispatcher.run` on every
Cloud Scheduler tick and on a nudge after each submit. The rule is the one KEDA applies on GKE
(`mode: SubscriptionSize`): workers wanted = ceil(backlog / jobs_per_worker), capped at
max_workers; start only the difference from those already running, so a second call while the
first workers boot starts nothing more.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from core.ports import BacklogReader, WorkerJobRunner

log = logging.getLogger("gpupipe.dispatch")


@dataclass(frozen=True)
class DispatchPolicy:
    jobs_per_worker: int
    max_workers: int

    def __post_init__(self) -> None:
        if self.jobs_per_worker < 1:
            raise ValueError(f"jobs_per_worker must be at least 1, got {self.jobs_per_worker}")
        if self.max_workers < 0:
            raise ValueError(f"max_workers must be at least 0, got {self.max_workers}")

    def workers_wanted(self, backlog: int) -> int:
        """Workers the backlog calls for, capped; 0 for no backlog."""
        if backlog <= 0:
            return 0
        return min(math.ceil(backlog / self.jobs_per_worker), self.max_workers)

    def workers_to_start(self, backlog: int, running: int) -> int:
        return max(0, self.workers_wanted(backlog) - max(0, running))


@dataclass(frozen=True)
class DispatchResult:
    backlog: int
    running: int | None
    """None when the backlog was empty and running workers were not looked up."""
    wanted: int
    started: int
    operation: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "backlog": self.backlog,
            "running": self.running,
            "wanted": self.wanted,
            "started": self.started,
            "operation": self.operation,
        }


class Dispatcher:
    def __init__(
        self, backlog: BacklogReader, workers: WorkerJobRunner, policy: DispatchPolicy, *, subscription: str
    ) -> None:
        self._backlog = backlog
        self._workers = workers
        self._policy = policy
        self._subscription = subscription

    def run(self, *, queued_hint: int = 0) -> DispatchResult:
        """Start the workers the backlog needs. `queued_hint` is a lower bound on the backlog
        from the caller (a submit that just published), since the Monitoring metric lags."""
        if self._policy.max_workers == 0:
            return DispatchResult(backlog=0, running=None, wanted=0, started=0)
        backlog = max(self._backlog.undelivered_messages(self._subscription), queued_hint, 0)
        wanted = self._policy.workers_wanted(backlog)
        if wanted == 0:
            return DispatchResult(backlog=backlog, running=None, wanted=0, started=0)
        running = self._workers.running_workers()
        to_start = self._policy.workers_to_start(backlog, running)
        operation = self._workers.start_workers(to_start) if to_start > 0 else None
        result = DispatchResult(backlog=backlog, running=running, wanted=wanted, started=to_start, operation=operation)
        log.info(
            "dispatch: backlog %d, running %d, wanted %d, started %d",
            backlog,
            running,
            wanted,
            to_start,
            extra={"dispatch": result.to_dict()},
        )
        return result
