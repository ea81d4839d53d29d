"""`WorkerJobRunner` over the Cloud Run Admin API: GPU workers are tasks of a Cloud Run job.

Each `start_workers(n)` runs one execution with `n` tasks (a task-count override); every task
is one worker that pulls jobs until it has been idle for a while and then exits. Running
workers are the tasks of unfinished executions that have not succeeded, failed or been
cancelled (pending tasks count: they are GPUs on their way).
"""

from __future__ import annotations

from typing import Any

from adapters.gcp.errors import translated
from core.ports import WorkerJobRunner


class CloudRunWorkerJobs(WorkerJobRunner):
    def __init__(
        self, job: str, *, jobs_client: Any = None, executions_client: Any = None, timeout: float = 10.0
    ) -> None:
        """`job` is the full name projects/P/locations/R/jobs/J. The clients are run_v2.JobsClient
        and run_v2.ExecutionsClient (built on first use when omitted)."""
        if job.count("/") != 5 or not job.startswith("projects/"):
            raise ValueError(f"job must be projects/P/locations/R/jobs/J, got {job!r}")
        self._job = job
        self._jobs_client = jobs_client
        self._executions_client = executions_client
        self._timeout = timeout

    def _jobs(self) -> Any:
        if self._jobs_client is None:
            from google.cloud import run_v2

            self._jobs_client = run_v2.JobsClient()
        return self._jobs_client

    def _executions(self) -> Any:
        if self._executions_client is None:
            from google.cloud import run_v2

            self._executions_client = run_v2.ExecutionsClient()
        return self._executions_client

    def running_workers(self) -> int:
        from google.cloud import run_v2

        request = run_v2.ListExecutionsRequest(parent=self._job)
        running = 0
        with translated(f"list the executions of {self._job}"):
            for execution in self._executions().list_executions(request=request, timeout=self._timeout):
                if execution.completion_time:
                    continue
                settled = execution.succeeded_count + execution.failed_count + execution.cancelled_count
                running += max(0, execution.task_count - settled)
        return running

    def start_workers(self, count: int) -> str:
        from google.cloud import run_v2

        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        request = run_v2.RunJobRequest(name=self._job, overrides=run_v2.RunJobRequest.Overrides(task_count=count))
        with translated(f"run {self._job} with {count} tasks"):
            # The operation completes when the execution does (minutes later): do not wait for it.
            operation = self._jobs().run_job(request=request, timeout=self._timeout)
        return str(operation.operation.name)
