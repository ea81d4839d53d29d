"""The GCP adapters of the dispatcher's ports, over hand-written fake clients that return the
real protobuf types (monitoring_v3.TimeSeries, run_v2.Execution)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3, run_v2
from google.longrunning import operations_pb2

from adapters.gcp.cloudrun_jobs import CloudRunWorkerJobs
from adapters.gcp.monitoring import METRIC, MonitoringBacklogReader
from core.ports import BackendUnavailable

JOB = "projects/p1/locations/us-central1/jobs/gpupipe-stg-worker"


def series(*values: int) -> monitoring_v3.TimeSeries:
    """A time series whose points are newest first, as the API returns them."""
    return monitoring_v3.TimeSeries(points=[monitoring_v3.Point(value={"int64_value": v}) for v in values])


@dataclass
class FakeMetricClient:
    answer: list[monitoring_v3.TimeSeries] = field(default_factory=list)
    error: Exception | None = None
    requests: list[monitoring_v3.ListTimeSeriesRequest] = field(default_factory=list)

    def list_time_series(self, *, request: monitoring_v3.ListTimeSeriesRequest, timeout: float) -> Any:
        assert timeout > 0
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return iter(self.answer)


def test_backlog_is_the_newest_point_of_the_subscription_metric() -> None:
    client = FakeMetricClient([series(12, 40, 3)])
    assert MonitoringBacklogReader("p1", client=client).undelivered_messages("gpupipe-stg-jobs-worker") == 12
    (request,) = client.requests
    assert request.name == "projects/p1"
    assert f'metric.type = "{METRIC}"' in request.filter
    assert 'resource.labels.subscription_id = "gpupipe-stg-jobs-worker"' in request.filter
    assert request.interval.end_time.timestamp() - request.interval.start_time.timestamp() == 300


def test_no_recent_point_means_no_backlog() -> None:
    assert MonitoringBacklogReader("p1", client=FakeMetricClient([])).undelivered_messages("s") == 0
    assert MonitoringBacklogReader("p1", client=FakeMetricClient([series()])).undelivered_messages("s") == 0


def test_monitoring_outage_is_backend_unavailable() -> None:
    client = FakeMetricClient(error=gexc.ServiceUnavailable("try later"))
    with pytest.raises(BackendUnavailable, match="backlog of s"):
        MonitoringBacklogReader("p1", client=client).undelivered_messages("s")


@dataclass
class FakeExecutionsClient:
    executions: list[run_v2.Execution]
    parents: list[str] = field(default_factory=list)

    def list_executions(self, *, request: run_v2.ListExecutionsRequest, timeout: float) -> Any:
        self.parents.append(request.parent)
        return iter(self.executions)


@dataclass
class FakeOperation:
    operation: operations_pb2.Operation


@dataclass
class FakeJobsClient:
    runs: list[run_v2.RunJobRequest] = field(default_factory=list)
    error: Exception | None = None

    def run_job(self, *, request: run_v2.RunJobRequest, timeout: float) -> FakeOperation:
        if self.error is not None:
            raise self.error
        self.runs.append(request)
        return FakeOperation(
            operations_pb2.Operation(name=f"projects/p1/locations/us-central1/operations/{len(self.runs)}")
        )


def test_running_workers_counts_unsettled_tasks_of_unfinished_executions() -> None:
    finished = run_v2.Execution(task_count=3, succeeded_count=3, completion_time={"seconds": 1_700_000_000})
    booting = run_v2.Execution(task_count=2)  # pending tasks: GPUs on their way
    half_done = run_v2.Execution(task_count=4, running_count=1, succeeded_count=2, failed_count=1)
    client = FakeExecutionsClient([finished, booting, half_done])
    jobs = CloudRunWorkerJobs(JOB, executions_client=client, jobs_client=FakeJobsClient())
    assert jobs.running_workers() == 3
    assert client.parents == [JOB]


def test_start_workers_runs_one_execution_with_a_task_count_override() -> None:
    client = FakeJobsClient()
    jobs = CloudRunWorkerJobs(JOB, jobs_client=client, executions_client=FakeExecutionsClient([]))
    assert jobs.start_workers(3) == "projects/p1/locations/us-central1/operations/1"
    (request,) = client.runs
    assert request.name == JOB and request.overrides.task_count == 3
    with pytest.raises(ValueError, match="at least 1"):
        jobs.start_workers(0)


def test_run_outage_is_backend_unavailable() -> None:
    jobs = CloudRunWorkerJobs(JOB, jobs_client=FakeJobsClient(error=gexc.ServiceUnavailable("x")))
    with pytest.raises(BackendUnavailable):
        jobs.start_workers(1)


def test_job_name_must_be_a_full_resource_name() -> None:
    with pytest.raises(ValueError, match="projects/P/locations/R/jobs/J"):
        CloudRunWorkerJobs("gpupipe-stg-worker")
