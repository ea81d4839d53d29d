"""Hand-written fakes of the dispatcher's two ports."""

from __future__ import annotations

from core.ports import BackendUnavailable, BacklogReader, WorkerJobRunner


class FakeBacklog(BacklogReader):
    def __init__(self, undelivered: int = 0, *, down: bool = False) -> None:
        self.undelivered = undelivered
        self.down = down
        self.asked: list[str] = []

    def undelivered_messages(self, subscription: str) -> int:
        self.asked.append(subscription)
        if self.down:
            raise BackendUnavailable("monitoring is down")
        return self.undelivered


class FakeWorkerJobs(WorkerJobRunner):
    """A Cloud Run job in miniature: started workers run until `finish` is called."""

    def __init__(self, running: int = 0) -> None:
        self.running = running
        self.started: list[int] = []
        self.lookups = 0

    def running_workers(self) -> int:
        self.lookups += 1
        return self.running

    def start_workers(self, count: int) -> str:
        assert count >= 1, "the dispatcher must never ask for zero workers"
        self.started.append(count)
        self.running += count
        return f"operations/op-{len(self.started)}"

    def finish(self, count: int) -> None:
        self.running = max(0, self.running - count)
