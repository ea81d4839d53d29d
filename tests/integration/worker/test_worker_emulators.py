"""The worker against the emulators (Pub/Sub, Firestore, fake-gcs-server) with the tiny model."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import Backends
from core import collection_names as c
from core.dead_letters import DeadLetterHandler
from core.jobs import JobStatus
from core.ledger import JobLedger
from core.model_registry import ModelVersion
from core.settings import Settings
from gpu_worker.consumer import Worker
from gpu_worker.encoding import read_parameters
from gpu_worker.errors import TransientError
from gpu_worker.model_store import resolve_model
from gpu_worker.runner import BatchResult, BatchSpec, DiffusersRunner, ImageRequest
from tests.integration.worker.conftest import WorkerProcess, recreate_jobs_subscription
from tests.unit.worker.support import (
    IGNORE_SCHEDULER_NUMPY_WARNING,
    FakeRunner,
    cancel,
    create_job,
    publish,
    usage_records,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings(IGNORE_SCHEDULER_NUMPY_WARNING)]


def tuned(settings: Settings, **worker: Any) -> Settings:
    values = {"max_batch_wait_seconds": 0.05, "progress_interval_seconds": 0.2, "shutdown_grace_seconds": 10.0}
    values.update(worker)
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=values)})


@pytest.fixture
def run_worker(emulator_settings: Settings, backends: Backends) -> Iterator[Any]:
    workers: list[Worker] = []

    def start(runner: Any, **worker: Any) -> Worker:
        w = Worker(
            tuned(emulator_settings, **worker),
            documents=backends.documents,
            blobs=backends.blobs,
            subscriber=backends.subscriber,
            runner=runner,
            worker_id=f"in-process-{len(workers)}",
        )
        w.start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.request_stop()
        w.shutdown(grace_seconds=5)


@pytest.fixture
def registered_runner(
    emulator_settings: Settings,
    backends: Backends,
    tiny_model_version: ModelVersion,
    tiny_model_dir: Path,
    tiny_runner: DiffusersRunner,
    tmp_path: Path,
) -> DiffusersRunner:
    """The session's tiny runner, pinned to the version the registry gives the same files."""
    settings = tuned(emulator_settings, model_cache_dir=str(tmp_path / "cache"))
    source = resolve_model(settings, backends.documents, backends.blobs)
    assert source.version == tiny_model_version.version
    for path in tiny_model_dir.rglob("*.safetensors"):
        assert (Path(source.location) / path.relative_to(tiny_model_dir)).read_bytes() == path.read_bytes()
    tiny_runner.model_version = source.version
    return tiny_runner


class RecordingRunner:
    """The real runner, keeping every batch's result."""

    def __init__(self, inner: DiffusersRunner) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.model_version = inner.model_version
        self.results: list[BatchResult] = []

    def warm_up(self) -> float:
        return 0.0

    def generate(self, spec: BatchSpec, requests: Sequence[ImageRequest], **kw: Any) -> BatchResult:
        result = self.inner.generate(spec, requests, **kw)
        self.results.append(result)
        return result


def status_of(backends: Backends, job_id: str) -> JobStatus:
    return JobLedger(backends.documents).require(job_id).status


def test_jobs_run_queued_to_succeeded_with_pngs_in_the_outputs_bucket(
    emulator_settings: Settings, backends: Backends, registered_runner: DiffusersRunner, run_worker: Any
) -> None:
    docs = backends.documents
    same = [create_job(docs, emulator_settings, prompt="a red car", seed=5) for _ in range(2)]
    other = create_job(docs, emulator_settings, prompt="a red car", seed=6)
    assert all(status_of(backends, j.id) is JobStatus.QUEUED for j in [*same, other])
    run_worker(registered_runner)
    for job in [*same, other]:
        publish(backends.publisher, emulator_settings, job)
    wait_for(lambda: all(status_of(backends, j.id) is JobStatus.SUCCEEDED for j in [*same, other]), 60, "success")
    images = []
    for job in [*same, other]:
        done = JobLedger(docs).require(job.id)
        assert done.started_at is not None and done.attempts == 1  # it went through running
        assert done.model_version == registered_runner.model_version
        assert len(usage_records(docs, job.id)) == 1
        (output,) = done.outputs
        data = backends.blobs.read(output.bucket, output.name)
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and output.content_type == "image/png"
        info = backends.blobs.stat(output.bucket, output.name)
        assert info is not None and info.content_type == "image/png"
        assert read_parameters(data)["model_version"] == registered_runner.model_version
        images.append(data)
    assert images[0] == images[1], "same seed, same parameters: the same bytes"
    assert images[0] != images[2], "another seed: another image"


def test_a_duplicate_message_makes_no_second_output_or_usage_record(
    emulator_settings: Settings, backends: Backends, registered_runner: DiffusersRunner, run_worker: Any
) -> None:
    job = create_job(backends.documents, emulator_settings)
    publish(backends.publisher, emulator_settings, job)
    publish(backends.publisher, emulator_settings, job)
    run_worker(registered_runner)
    wait_for(lambda: status_of(backends, job.id) is JobStatus.SUCCEEDED, 60, "success")
    publish(backends.publisher, emulator_settings, job)  # late duplicate, after it finished
    time.sleep(2)
    prefix = f"{job.user_id}/jobs/{job.id}/"
    assert [b.name for b in backends.blobs.list(emulator_settings.names.outputs_bucket, prefix)] == [prefix + "0.png"]
    assert len(usage_records(backends.documents, job.id)) == 1
    assert backends.subscriber.pull(emulator_settings.names.jobs_subscription, 5, timeout=2) == []


def test_duplicate_messages_to_two_workers_claim_each_job_once(
    emulator_settings: Settings, backends: Backends, run_worker: Any
) -> None:
    """Three extra publishes per job right after the first, two workers taking one message at a
    time: each job is claimed once (attempts == 1), written once and billed once, and no
    transaction is left wedged on the emulator."""
    runners = [FakeRunner(step_seconds=0.01), FakeRunner(step_seconds=0.01)]
    for runner in runners:
        run_worker(runner, max_outstanding_messages=2)
    jobs = [create_job(backends.documents, emulator_settings) for _ in range(10)]
    for job in jobs:
        for _ in range(4):
            publish(backends.publisher, emulator_settings, job)
    for job in jobs:
        wait_for(lambda job=job: status_of(backends, job.id) is JobStatus.SUCCEEDED, 90, "every job to succeed")
    for job in jobs:
        done = JobLedger(backends.documents).require(job.id)
        assert done.attempts == 1, f"job {job.id} was claimed {done.attempts} times"
        assert len(usage_records(backends.documents, job.id)) == 1
        prefix = f"{job.user_id}/jobs/{job.id}/"
        assert len(backends.blobs.list(emulator_settings.names.outputs_bucket, prefix)) == 1
    ran = sorted(key for runner in runners for _, keys in runner.calls for key in keys)
    assert ran == sorted(job.id for job in jobs)


def test_cancel_during_a_50_step_job_stops_it_early(
    emulator_settings: Settings, backends: Backends, registered_runner: DiffusersRunner, run_worker: Any
) -> None:
    job = create_job(backends.documents, emulator_settings, num_inference_steps=50, width=256, height=256)
    recorder = RecordingRunner(registered_runner)
    worker = run_worker(recorder, progress_interval_seconds=0.2)
    publish(backends.publisher, emulator_settings, job)
    wait_for(lambda: JobLedger(backends.documents).require(job.id).progress > 0, 60, "progress")
    cancel(backends.documents, job.id)
    cancelled_at = time.monotonic()
    wait_for(
        lambda: recorder.results and worker.status()["jobs_in_flight"] == 0,
        30,
        "the pipeline to stop and the message to be settled",
    )
    stopped = JobLedger(backends.documents).require(job.id)
    assert stopped.status is JobStatus.CANCELLED
    assert stopped.progress < 1.0
    assert time.monotonic() - cancelled_at < 10
    assert backends.blobs.list(emulator_settings.names.outputs_bucket, f"{job.user_id}/jobs/{job.id}/") == []
    (result,) = recorder.results
    assert result.cancelled == {job.id} and result.images == {}
    assert 0 < result.steps_run < 50, f"the pipeline ran {result.steps_run} of 50 steps"


def test_a_job_that_always_fails_transiently_ends_dead_lettered(
    emulator_settings: Settings, backends: Backends, run_worker: Any
) -> None:
    recreate_jobs_subscription(
        emulator_settings, backends, retry_minimum_backoff_seconds=0.1, retry_maximum_backoff_seconds=0.5
    )
    runner = FakeRunner(fail_with=TransientError("CUDA error: an illegal memory access was encountered"))
    job = create_job(backends.documents, emulator_settings)
    run_worker(runner)
    publish(backends.publisher, emulator_settings, job)
    dead = backends.subscriber.pull(emulator_settings.names.jobs_dead_subscription, 1, timeout=90)
    assert [m.attributes.get("job_id") for m in dead] == [job.id]
    assert len(runner.calls) == 5  # the subscription's max_delivery_attempts
    outcome = DeadLetterHandler(backends.documents, backends.blobs, emulator_settings).handle(
        job.id, delivery_attempts=dead[0].delivery_attempt
    )
    dead[0].ack()
    assert outcome.failed
    failed = JobLedger(backends.documents).require(job.id)
    assert failed.status is JobStatus.FAILED and failed.error is not None and failed.error.code == "dead_lettered"
    assert len(usage_records(backends.documents, job.id)) == 1
    quota = backends.documents.get(c.QUOTAS, job.user_id)
    assert quota is not None and quota["active_jobs"] == 0


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return dict(json.loads(response.read()))


def healthy(port: int) -> bool:
    try:
        return health(port)["status"] == "ok"
    except OSError:
        return False


@pytest.mark.timeout(480)
def test_a_worker_killed_mid_job_leaves_it_to_a_second_worker(
    emulator_settings: Settings,
    backends: Backends,
    tiny_model_version: ModelVersion,
    worker_process: WorkerProcess,
) -> None:
    recreate_jobs_subscription(emulator_settings, backends, ack_deadline_seconds=10)
    first, first_port, first_log = worker_process("--worker-id", "doomed")
    wait_for(lambda: healthy(first_port) or first.poll() is not None, 120, "the first worker to be ready")
    assert first.poll() is None, first_log.read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{first_port}/metrics", timeout=2) as response:
        assert b"gpupipe_worker_ready 1.0" in response.read()
    job = create_job(backends.documents, emulator_settings, num_inference_steps=100, width=256, height=256)
    publish(backends.publisher, emulator_settings, job)
    wait_for(lambda: JobLedger(backends.documents).require(job.id).progress > 0, 60, "the first worker to run it")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    claimed = JobLedger(backends.documents).require(job.id)
    assert claimed.status is JobStatus.RUNNING and claimed.worker_id == "doomed"

    killed_at = time.monotonic()
    second, second_port, second_log = worker_process("--worker-id", "heir")
    try:
        # The dead worker's message comes back at its ack deadline (10 s) and is nacked until the
        # job's heartbeat is stale (two lease extensions); the reconciler may requeue it first.
        wait_for(lambda: status_of(backends, job.id) is JobStatus.SUCCEEDED, 240, "the second worker to finish it")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- second worker log ---\n{second_log.read_text()[-4000:]}") from None
    done = JobLedger(backends.documents).require(job.id)
    assert done.worker_id == "heir" and done.attempts == 2 and len(done.outputs) == 1
    assert done.model_version == tiny_model_version.version
    assert len(usage_records(backends.documents, job.id)) == 1
    print(f"redelivered and finished {time.monotonic() - killed_at:.1f} s after the kill")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, second_log.read_text()[-3000:]


def test_exit_when_idle_exits_zero(
    emulator_settings: Settings, tiny_model_version: ModelVersion, worker_process: WorkerProcess
) -> None:
    process, _port, log_path = worker_process("--exit-when-idle", "1")
    assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert "worker ready" in text and "idle for 1 s; stopping" in text


def test_sigterm_finishes_the_running_job_and_exits_zero(
    emulator_settings: Settings, backends: Backends, tiny_model_version: ModelVersion, worker_process: WorkerProcess
) -> None:
    process, port, log_path = worker_process("--worker-id", "terminated", GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS="60")
    wait_for(lambda: healthy(port) or process.poll() is not None, 120, "the worker to be ready")
    job = create_job(backends.documents, emulator_settings, num_inference_steps=40, width=128, height=128)
    publish(backends.publisher, emulator_settings, job)
    wait_for(lambda: JobLedger(backends.documents).require(job.id).progress > 0, 60, "the job to run")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    assert status_of(backends, job.id) is JobStatus.SUCCEEDED
    assert backends.subscriber.pull(emulator_settings.names.jobs_subscription, 1, timeout=2) == []
