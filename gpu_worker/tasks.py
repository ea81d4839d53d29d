"""The jobs in flight in one worker: a `Task` per job, and the `InFlight` table the worker's
threads share (the subscriber threads add to it, the delivery pool removes from it, the monitor
reads it, shutdown waits for it to empty)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.execution import Claim
from core.jobs import Job
from core.ports import ReceivedMessage
from gpu_worker.runner import BatchSpec

if TYPE_CHECKING:
    from prometheus_client import Gauge


class Phase(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"


def job_log_extra(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "user_id": job.user_id, "batch_id": job.batch_id}


@dataclass(eq=False)
class Task:
    """One job in flight in this worker, from its message's arrival to its ack or nack."""

    job: Job
    message: ReceivedMessage
    spec: BatchSpec
    received_at: float
    claim: Claim
    cancelled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    phase: Phase = Phase.WAITING
    progress: float = 0.0
    progress_written: float = 0.0
    progress_written_at: float = 0.0
    status_checked_at: float = 0.0

    @property
    def log_extra(self) -> dict[str, Any]:
        return job_log_extra(self.job)

    def enter(self, phase: Phase) -> None:
        # Under the task's lock, so no progress write for it can start after it is delivering.
        with self.lock:
            self.phase = phase

    def finish(self) -> bool:
        """Mark the task done; False when it already was (a task is settled once)."""
        with self.lock:
            if self.phase is Phase.DONE:
                return False
            self.phase = Phase.DONE
            return True


class Arrival(StrEnum):
    """What a message is to the jobs in flight."""

    NEW = "new"  # its job is not held here: admit it
    REDELIVERED = "redelivered"  # the same message again for a job held here
    DUPLICATE = "duplicate"  # another message for a job held (or being admitted) here


class InFlight:
    """The jobs this worker holds, the job ids being admitted right now, and the messages held
    back while draining, under one condition. `draining` stops admission (messages are held
    instead, unsettled until the pull stops); `closed` is set at shutdown, when the held messages
    are handed back."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._tasks: dict[str, Task] = {}
        self._intake: set[str] = set()
        self._held: list[ReceivedMessage] = []
        self._lock = threading.Condition()
        self.draining = threading.Event()
        self.closed = threading.Event()
        self.last_activity = time.monotonic()
        """When a message last arrived or a job was last settled (the idle exit counts from it)."""

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    def arrive(self, job_id: str, message: ReceivedMessage) -> Arrival:
        """Classify a message; a NEW one marks `job_id` as being admitted until `admitted`."""
        with self._lock:
            running = self._tasks.get(job_id)
            if running is not None and running.message.message_id == message.message_id:
                running.message = message  # a redelivery of the same message: its new lease is the live one
                return Arrival.REDELIVERED
            if running is not None or job_id in self._intake:
                return Arrival.DUPLICATE
            self._intake.add(job_id)
            return Arrival.NEW

    def admitted(self, job_id: str) -> None:
        with self._lock:
            self._intake.discard(job_id)

    def hold(self, message: ReceivedMessage) -> bool:
        """Keep a message unsettled until shutdown (flow control then holds back further
        messages); False once closed, when the caller must settle it itself."""
        with self._lock:
            if self.closed.is_set():
                return False
            self._held.append(message)
            return True

    def add(self, task: Task) -> bool:
        """Add a claimed task; while draining its message is held instead and this is False."""
        with self._lock:
            if self.draining.is_set():
                self._held.append(task.message)
                return False
            self._tasks[task.job.id] = task
            self._gauge.set(len(self._tasks))
            return True

    def remove(self, task: Task) -> None:
        with self._lock:
            if self._tasks.get(task.job.id) is task:
                del self._tasks[task.job.id]
            self._gauge.set(len(self._tasks))
            self._lock.notify_all()
        self.touch()

    def wait_empty(self, deadline: float) -> bool:
        with self._lock:
            while self._tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def close(self) -> tuple[list[ReceivedMessage], list[Task]]:
        """Close for good; return the held messages and the tasks still here, to settle."""
        with self._lock:
            self.closed.set()
            held, self._held = self._held, []
            return held, list(self._tasks.values())
