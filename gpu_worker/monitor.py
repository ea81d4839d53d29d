"""The monitor thread: polls the status of jobs in flight (a cancel stops a waiting job before
it starts and a running one at the next denoising step; so does finding that another worker
took the job over), writes progress at most once per `progress_interval_seconds`, extends
message leases and heartbeats the jobs, replaces a stalled pull, and notices idleness.

It only reads the in-flight table and flags tasks; the one thing it settles is a task it took
out of the batcher before it ran.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from core.execution import Claim
from core.jobs import Job, JobStatus
from core.ledger import JobLedger
from core.settings import Settings
from gpu_worker.batcher import Batcher
from gpu_worker.delivery import Delivery
from gpu_worker.errors import TRANSIENT
from gpu_worker.pull import Pull
from gpu_worker.tasks import InFlight, Phase, Task

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        settings: Settings,
        *,
        ledger: JobLedger,
        inflight: InFlight,
        batcher: Batcher[Task],
        delivery: Delivery,
        pull: Pull,
        stop: threading.Event,
        on_idle: Callable[[], None],
        worker_id: str,
        clock: Callable[[], dt.datetime],
    ) -> None:
        """Runs until `stop` is set; calls `on_idle` after `exit_when_idle_seconds` without work."""
        self._config = settings.worker
        self._stall = settings.recovery.stream_stall_seconds
        self._ledger = ledger
        self._inflight = inflight
        self._batcher = batcher
        self._delivery = delivery
        self._pull = pull
        self._stop = stop
        self._on_idle = on_idle
        self._worker_id = worker_id
        self._clock = clock
        self._stall_checked = time.monotonic()

    def run(self) -> None:
        interval = max(0.05, self._config.progress_interval_seconds)
        lease_every = max(1.0, self._config.lease_extension_seconds / 3)
        last_lease = time.monotonic()
        while not self._stop.wait(min(0.25, interval)):
            try:
                last_lease = self._once(interval, lease_every, last_lease)
            except Exception:  # the monitor must outlive anything one round does; the traceback is logged
                log.exception(
                    "monitor round failed; the next one runs as scheduled", extra={"worker_id": self._worker_id}
                )

    def _once(self, interval: float, lease_every: float, last_lease: float) -> float:
        """One round: status checks, leases and heartbeats when due, the stall check, idleness.
        Returns when leases were last extended."""
        now = time.monotonic()
        tasks = self._inflight.tasks()
        for task in tasks:
            try:
                self._watch(task, now, interval)
            except TRANSIENT as exc:
                log.warning("could not check the job (%s)", exc, extra=task.log_extra)
        if now - last_lease >= lease_every:
            last_lease = now
            for task in tasks:
                self._extend_lease(task)
        self._check_stall(now, bool(tasks))
        idle_limit = self._config.exit_when_idle_seconds
        if idle_limit is not None and not tasks and now - self._inflight.last_activity >= idle_limit:
            log.info("idle for %.0f s; stopping", idle_limit, extra={"worker_id": self._worker_id})
            self._on_idle()
        return last_lease

    def _check_stall(self, now: float, busy: bool) -> None:
        """A pull that received nothing for `stream_stall_seconds` while jobs have been queued
        that long is stuck (a stream the backend stopped serving): replace it. Checked at most
        every half of that, with one cheap query."""
        stall = self._stall
        if busy or self._inflight.draining.is_set() or now - self._stall_checked < stall / 2:
            return
        self._stall_checked = now
        if now - self._pull.last_message < stall:
            return
        try:
            waiting = self._ledger.waiting_since(JobStatus.QUEUED, self._clock() - dt.timedelta(seconds=stall), limit=1)
        except TRANSIENT as exc:
            log.warning("could not check for a stalled pull (%s)", exc, extra={"worker_id": self._worker_id})
            return
        if not waiting:
            return
        log.warning(
            "nothing received for %.0f s while jobs wait; reopening the pull",
            stall,
            extra={"worker_id": self._worker_id},
        )
        self._pull.reopen()

    def _watch(self, task: Task, now: float, interval: float) -> None:
        if task.phase in (Phase.DELIVERING, Phase.DONE) or now - task.status_checked_at < interval:
            return
        task.status_checked_at = now
        job = self._ledger.get(task.job.id)
        lost = job is not None and not job.status.terminal and not _holds(task.claim, job)
        if job is None or job.status.terminal or lost:
            state = "taken over by another worker" if lost else (job.status.value if job else "deleted")
            log.info("job %s while in flight; stopping it", state, extra=task.log_extra)
            task.cancelled.set()
            for removed in self._batcher.remove(lambda t: t is task):
                self._delivery.settle(removed, ack=True, outcome="claim_lost" if lost else "cancelled")
            return
        with task.lock:
            due = task.phase is Phase.RUNNING and task.progress > task.progress_written
            if due and now - task.progress_written_at >= interval:
                progress = task.progress
                self._ledger.record_progress(task.job.id, progress)
                task.progress_written = progress
                task.progress_written_at = now

    def _extend_lease(self, task: Task) -> None:
        if task.phase is Phase.DONE:
            return
        try:
            task.message.modify_ack_deadline(min(600, self._config.lease_extension_seconds))
            if task.phase in (Phase.WAITING, Phase.RUNNING):
                self._ledger.heartbeat(task.job.id)  # tells other workers this job's owner is alive
        except TRANSIENT as exc:
            log.warning("could not extend the lease (%s)", exc, extra=task.log_extra)


def _holds(claim: Claim, job: Job) -> bool:
    return job.worker_id == claim.worker_id and job.attempts == claim.token
