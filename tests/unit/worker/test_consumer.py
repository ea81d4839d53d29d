"""The consumer on the memory fakes with a fake runner: lifecycle decisions, batching,
cancellation, idempotent completion, failures, progress, shutdown and idleness."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from adapters.memory import MemoryBackends
from adapters.memory.documents import MemoryDocumentStore
from core import collection_names as c
from core import execution
from core.jobs import JobStatus, output_object_name
from core.ledger import JobLedger
from core.ports import StreamingPull, Subscriber
from core.settings import Settings
from core.timeutil import utcnow
from gpu_worker.consumer import Worker
from gpu_worker.errors import TransientError
from gpu_worker.health import HealthServer
from tests.unit.worker.support import (
    FakeRunner,
    cancel,
    create_batch,
    create_job,
    job_status,
    permanent,
    publish,
    usage_records,
    wait_for,
)

WorkerFactory = Callable[..., Worker]


def worker_settings(settings: Settings, **worker: Any) -> Settings:
    values = {"max_batch_wait_seconds": 0.05, "progress_interval_seconds": 0.2, "shutdown_grace_seconds": 5.0}
    values.update(worker)
    recovery = settings.recovery.model_copy(
        update={"interval_seconds": 0.5, "queued_after_seconds": 2, "stream_stall_seconds": 1.0}
    )
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=values), "recovery": recovery})


@pytest.fixture
def make_worker(memory_settings: Settings, memory_backends: MemoryBackends) -> Iterator[WorkerFactory]:
    started: list[Worker] = []

    def make(
        runner: FakeRunner | None = None,
        documents: Any = None,
        on_terminal: Any = None,
        publisher: Any = None,
        worker_id: str = "test-worker",
        **worker: Any,
    ) -> Worker:
        w = Worker(
            worker_settings(memory_settings, **worker),
            documents=documents or memory_backends.documents,
            blobs=memory_backends.blobs,
            subscriber=memory_backends.pubsub,
            runner=runner or FakeRunner(),
            worker_id=worker_id,
            on_terminal=on_terminal,
            publisher=publisher,
        )
        w.start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.request_stop()
        w.shutdown(grace_seconds=2)


def succeeded(backends: MemoryBackends, job_id: str) -> bool:
    return job_status(backends.documents, job_id) is JobStatus.SUCCEEDED


def settled(backends: MemoryBackends, settings: Settings) -> bool:
    """Every message of the jobs subscription acked. A pull cannot tell (a leased message is not
    pullable either), so this looks into the fake's own state."""
    subscription = backends.pubsub._subscriptions[settings.names.jobs_subscription]
    return not subscription.entries


def test_a_job_runs_to_success_with_outputs_usage_and_pinned_version(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner()
    make_worker(runner)
    job = create_job(memory_backends.documents, memory_settings, num_images=2, output_format="webp")
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: succeeded(memory_backends, job.id), 10, "the job to succeed")
    done = JobLedger(memory_backends.documents).require(job.id)
    assert done.model_version == "v-fake" and done.worker_id == "test-worker"
    assert [o.index for o in done.outputs] == [0, 1]
    assert [o.seed for o in done.outputs] == [42, 43]
    for output in done.outputs:
        assert output.content_type == "image/webp"
        assert memory_backends.blobs.stat(output.bucket, output.name) is not None
    usage = usage_records(memory_backends.documents, job.id)
    assert len(usage) == 1 and usage[0]["images"] == 2 and usage[0]["model_version"] == "v-fake"
    assert done.gpu_seconds == pytest.approx(0.02)
    assert done.progress == 1.0
    quota = memory_backends.documents.get(c.QUOTAS, job.user_id)
    assert quota is not None and quota["active_jobs"] == 0
    assert settled(memory_backends, memory_settings)


def test_compatible_jobs_share_a_batch_and_incompatible_ones_do_not(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner()
    docs = memory_backends.documents
    jobs = [create_job(docs, memory_settings, seed=s) for s in (1, 2, 3)]
    other = create_job(docs, memory_settings, num_inference_steps=30)
    for job in [*jobs, other]:
        publish(memory_backends.pubsub, memory_settings, job)
    make_worker(runner, max_batch_size=4, max_batch_wait_seconds=0.5)
    wait_for(lambda: all(succeeded(memory_backends, j.id) for j in [*jobs, other]), 10, "all jobs")
    batches = sorted((spec.steps, sorted(keys)) for spec, keys in runner.calls)
    assert batches == [(20, sorted(j.id for j in jobs)), (30, [other.id])]


def test_a_duplicate_message_makes_no_second_output_or_usage_record(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner(step_seconds=0.01)
    make_worker(runner)
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: succeeded(memory_backends, job.id), 10, "the job to succeed")
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "both messages acked")
    publish(memory_backends.pubsub, memory_settings, job)  # and once more after it finished
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "the late duplicate acked")
    assert len(usage_records(memory_backends.documents, job.id)) == 1
    names = [b.name for b in memory_backends.blobs.list(memory_settings.names.outputs_bucket, f"{job.user_id}/jobs/")]
    assert names == [output_object_name(job.user_id, job.id, 0, "png")]
    assert len(runner.calls) == 1


def test_a_redelivered_job_with_its_outputs_written_finishes_without_the_model(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    docs = memory_backends.documents
    job = create_job(docs, memory_settings, num_images=2)
    ledger = JobLedger(docs)
    stale = utcnow() + dt.timedelta(seconds=1)  # the crashed worker's heartbeat is already stale
    execution.claim(ledger, job.id, worker_id="crashed-worker", model_version="v-old", stale_before=stale)
    ledger.take_over(job.id, JobStatus.RUNNING, stale)  # what the reconciler does for it
    bucket = memory_settings.names.outputs_bucket
    for index in range(2):
        memory_backends.blobs.create(bucket, output_object_name(job.user_id, job.id, index, "png"), b"png bytes")
    runner = FakeRunner()
    make_worker(runner)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: succeeded(memory_backends, job.id), 10, "the job to succeed")
    assert runner.calls == []
    done = ledger.require(job.id)
    assert len(done.outputs) == 2 and done.model_version == "v-old"
    assert len(usage_records(docs, job.id)) == 1


def test_a_job_cancelled_before_it_starts_is_acked_unrun(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner()
    job = create_job(memory_backends.documents, memory_settings)
    cancel(memory_backends.documents, job.id)
    publish(memory_backends.pubsub, memory_settings, job)
    make_worker(runner)
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "the message acked")
    assert runner.calls == [] and job_status(memory_backends.documents, job.id) is JobStatus.CANCELLED


def test_a_job_cancelled_while_waiting_for_its_batch_never_runs(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner()
    make_worker(runner, max_batch_size=8, max_batch_wait_seconds=30)
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: job_status(memory_backends.documents, job.id) is JobStatus.RUNNING, 5, "the claim")
    cancel(memory_backends.documents, job.id)
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "the message acked")
    assert runner.calls == []


def test_a_running_job_cancelled_stops_early_and_delivers_nothing(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner(step_seconds=0.05)
    make_worker(runner, progress_interval_seconds=0.1)
    job = create_job(memory_backends.documents, memory_settings, num_inference_steps=100)
    publish(memory_backends.pubsub, memory_settings, job)
    assert runner.started.wait(5)
    time.sleep(0.3)
    cancel(memory_backends.documents, job.id)
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "the message acked")
    assert job_status(memory_backends.documents, job.id) is JobStatus.CANCELLED
    assert memory_backends.blobs.list(memory_settings.names.outputs_bucket) == []
    progress = JobLedger(memory_backends.documents).require(job.id).progress
    assert 0 < progress < 0.5  # stopped long before the 100 steps (5 s) were done


def test_a_permanent_error_fails_the_job_and_acks(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    make_worker(FakeRunner(fail_with=permanent("the model refused this prompt")))
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: job_status(memory_backends.documents, job.id) is JobStatus.FAILED, 5, "the failure")
    failed = JobLedger(memory_backends.documents).require(job.id)
    assert failed.error is not None and failed.error.code == "model_rejected"
    assert len(usage_records(memory_backends.documents, job.id)) == 1
    wait_for(lambda: settled(memory_backends, memory_settings), 5, "the message acked")


def test_invalid_stored_input_fails_without_running(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner()
    job = create_job(memory_backends.documents, memory_settings)
    memory_backends.documents.update(c.JOBS, job.id, {"input.width": 100})
    make_worker(runner)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: job_status(memory_backends.documents, job.id) is JobStatus.FAILED, 5, "the failure")
    failed = JobLedger(memory_backends.documents).require(job.id)
    assert failed.error is not None and failed.error.code == "invalid_argument" and "width" in failed.error.message
    assert runner.calls == []


def test_a_job_that_always_fails_transiently_is_dead_lettered(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner(fail_with=TransientError("the GPU fell off the bus"))
    make_worker(runner)
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    dead = memory_backends.pubsub.pull(memory_settings.names.jobs_dead_subscription, 1, timeout=15)
    assert [m.attributes["job_id"] for m in dead] == [job.id]
    assert dead[0].attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert len(runner.calls) == 5
    assert job_status(memory_backends.documents, job.id) is JobStatus.RUNNING  # the dead-letter handler fails it
    assert usage_records(memory_backends.documents, job.id) == []


def test_finishing_the_last_job_of_a_batch_writes_its_summary(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    docs = memory_backends.documents
    batch_id = create_batch(docs, jobs_total=2)
    jobs = [create_job(docs, memory_settings, batch_id=batch_id, seed=s) for s in (1, 2)]
    make_worker(FakeRunner())
    for job in jobs:
        publish(memory_backends.pubsub, memory_settings, job)
    name = f"{jobs[0].user_id}/batches/{batch_id}/summary.json"
    bucket = memory_settings.names.outputs_bucket
    wait_for(lambda: memory_backends.blobs.stat(bucket, name), 10, "summary.json")
    summary = json.loads(memory_backends.blobs.read(bucket, name))
    assert sorted(r["job_id"] for r in summary["results"]) == sorted(j.id for j in jobs)
    assert all(r["status"] == "succeeded" for r in summary["results"])
    batch = docs.get(c.BATCHES, batch_id)
    assert batch is not None and batch["succeeded"] == 2 and batch["status"] == "completed"


class CountingDocuments(MemoryDocumentStore):
    """The memory store, recording every progress write."""

    def __init__(self, inner: MemoryDocumentStore) -> None:
        self.__dict__.update(inner.__dict__)
        self.progress_writes: list[tuple[float, float]] = []

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        if "progress" in fields:
            self.progress_writes.append((time.monotonic(), float(fields["progress"])))
        super().update(collection, doc_id, fields)


def test_progress_is_written_at_most_once_per_interval(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    documents = CountingDocuments(memory_backends.documents)
    make_worker(FakeRunner(step_seconds=0.02), documents=documents, progress_interval_seconds=0.25)
    job = create_job(documents, memory_settings, num_inference_steps=75)  # 1.5 s
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: succeeded(memory_backends, job.id), 10, "the job to succeed")
    writes = documents.progress_writes
    assert 2 <= len(writes) <= 8, writes
    gaps = [b[0] - a[0] for a, b in zip(writes, writes[1:], strict=False)]
    assert min(gaps) >= 0.2
    assert [p for _, p in writes] == sorted(p for _, p in writes)
    assert JobLedger(documents).require(job.id).progress == 1.0  # no stale write after success


def test_shutdown_finishes_the_running_batch_and_gives_back_the_rest(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner(step_seconds=0.02)
    docs = memory_backends.documents
    running = create_job(docs, memory_settings)  # 20 steps: 0.4 s
    waiting = create_job(docs, memory_settings, num_inference_steps=30)  # another batch
    worker = make_worker(runner, max_batch_size=1, shutdown_grace_seconds=5)
    publish(memory_backends.pubsub, memory_settings, running)
    assert runner.started.wait(5)
    publish(memory_backends.pubsub, memory_settings, waiting)
    wait_for(lambda: job_status(docs, waiting.id) is JobStatus.RUNNING, 5, "the second claim")
    began = time.monotonic()
    worker.request_stop("SIGTERM")
    worker.shutdown()
    assert time.monotonic() - began < 5
    assert job_status(docs, running.id) is JobStatus.SUCCEEDED
    assert [keys for _, keys in runner.calls] == [[running.id]]
    # The given-back job is redelivered and left for another worker (it stays claimed, re-claimable).
    again = memory_backends.pubsub.pull(memory_settings.names.jobs_subscription, 5, timeout=5)
    assert [m.attributes["job_id"] for m in again] == [waiting.id]


def test_shutdown_past_the_grace_period_stops_the_batch_and_nacks_it(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    runner = FakeRunner(step_seconds=0.1)
    worker = make_worker(runner, shutdown_grace_seconds=0.3)
    job = create_job(memory_backends.documents, memory_settings, num_inference_steps=100)  # 10 s
    publish(memory_backends.pubsub, memory_settings, job)
    assert runner.started.wait(5)
    began = time.monotonic()
    worker.shutdown()
    assert time.monotonic() - began < 3
    assert job_status(memory_backends.documents, job.id) is JobStatus.RUNNING
    again = memory_backends.pubsub.pull(memory_settings.names.jobs_subscription, 5, timeout=5)
    assert [m.attributes["job_id"] for m in again] == [job.id]


def test_an_idle_worker_asks_to_stop(make_worker: WorkerFactory) -> None:
    worker = make_worker(FakeRunner(), exit_when_idle_seconds=0.3)
    assert worker.wait_for_stop(5)
    assert worker.stop_reason == "idle"


def test_a_busy_worker_does_not_stop_for_idleness(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    worker = make_worker(FakeRunner(step_seconds=0.05), exit_when_idle_seconds=0.3)
    job = create_job(memory_backends.documents, memory_settings, num_inference_steps=20)  # 1 s
    publish(memory_backends.pubsub, memory_settings, job)
    deadline = time.monotonic() + 10
    while not succeeded(memory_backends, job.id):
        assert not worker.wait_for_stop(0.02), "stopped for idleness while a job ran"
        assert time.monotonic() < deadline
    assert worker.wait_for_stop(5)  # and once it is done, it goes idle
    assert worker.stop_reason == "idle"


def test_health_and_metrics(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    worker = make_worker(FakeRunner())
    job = create_job(memory_backends.documents, memory_settings, num_images=3)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: succeeded(memory_backends, job.id), 10, "the job to succeed")
    server = HealthServer("127.0.0.1", 0, worker.metrics, worker.status)
    server.start()
    try:
        host, port = server.address
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as response:
            health = json.loads(response.read())
        assert health["status"] == "ok" and health["model_version"] == "v-fake"
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        for name in (
            "gpupipe_worker_queue_wait_seconds_bucket",
            "gpupipe_worker_batch_images_bucket",
            "gpupipe_worker_model_seconds_sum",
            "gpupipe_worker_images_per_second",
            "gpupipe_worker_failures_total",
        ):
            assert name in text
        assert "gpupipe_worker_images_total 3.0" in text
        worker.request_stop()
        threading.Thread(target=worker.shutdown, daemon=True).start()
        wait_for(lambda: worker.status()["status"] == "draining", 5, "draining")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5)
        assert refused.value.code == 503
        refused.value.close()
    finally:
        server.stop()


def test_a_finished_job_is_announced_to_its_webhook(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    from core.webhooks import WebhookNotifier

    notifier = WebhookNotifier(memory_backends.webhooks, memory_backends.blobs, url_ttl_seconds=60)
    make_worker(on_terminal=notifier)
    job = create_job(memory_backends.documents, memory_settings, webhook="https://hooks.example.test/w")
    publish(memory_backends.pubsub, memory_settings, job)
    delivered = memory_backends.webhooks.wait_for(1, timeout=10)
    assert [(p["event"], p["job"]["id"], len(p["job"]["outputs"])) for _, p in delivered] == [
        ("job.succeeded", job.id, 1)
    ]


def test_a_running_job_whose_worker_went_silent_is_requeued_and_finished(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    """Its worker died and its message is not back: the job document says so first."""
    job = create_job(memory_backends.documents, memory_settings)
    ledger = JobLedger(memory_backends.documents, clock=lambda: utcnow() - dt.timedelta(minutes=5))
    ledger.transition(job.id, JobStatus.RUNNING, lambda j: setattr(j, "worker_id", "dead-worker"))
    make_worker(publisher=memory_backends.pubsub, lease_extension_seconds=3)  # no message published
    wait_for(lambda: succeeded(memory_backends, job.id), 15, "the silent worker's job to be finished")
    done = JobLedger(memory_backends.documents).require(job.id)
    assert done.worker_id == "test-worker" and done.attempts == 2
    assert len(usage_records(memory_backends.documents, job.id)) == 1


def test_duplicate_messages_to_two_workers_run_the_job_once(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    """Four messages for each job (an extra publish right after the 202), two workers: each job is
    claimed once, runs once, writes its outputs once and is billed once."""
    runners = [FakeRunner(step_seconds=0.01), FakeRunner(step_seconds=0.01)]
    for index, runner in enumerate(runners):
        make_worker(runner, worker_id=f"worker-{index}", max_outstanding_messages=1)
    jobs = [create_job(memory_backends.documents, memory_settings) for _ in range(5)]
    for job in jobs:
        for _ in range(4):
            publish(memory_backends.pubsub, memory_settings, job)
    for job in jobs:
        wait_for(lambda job=job: succeeded(memory_backends, job.id), 20, "every job to succeed")
    wait_for(lambda: settled(memory_backends, memory_settings), 10, "every duplicate acked")
    ran = sorted(key for runner in runners for _, keys in runner.calls for key in keys)
    assert ran == sorted(job.id for job in jobs), "a job ran on two workers"
    for job in jobs:
        assert JobLedger(memory_backends.documents).require(job.id).attempts == 1
        assert len(usage_records(memory_backends.documents, job.id)) == 1


def test_a_worker_whose_claim_was_taken_over_drops_its_result(
    make_worker: WorkerFactory, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    """The worker stalled long enough for another to take the job: its images are not recorded
    and it writes no usage; the job finishes once, on the new holder."""
    release = threading.Event()
    runner = FakeRunner(gate=release)
    make_worker(runner, worker_id="slow-worker")
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: runner.calls, 10, "the slow worker to start the job")
    ledger = JobLedger(memory_backends.documents)
    stale = utcnow() + dt.timedelta(seconds=1)
    ledger.take_over(job.id, JobStatus.RUNNING, stale)  # as the reconciler does for a silent worker
    execution.claim(ledger, job.id, worker_id="new-holder", model_version="v-fake", stale_before=stale)
    release.set()
    wait_for(lambda: settled(memory_backends, memory_settings), 10, "the slow worker to settle its message")
    current = ledger.require(job.id)
    assert current.status is JobStatus.RUNNING and current.worker_id == "new-holder"
    assert usage_records(memory_backends.documents, job.id) == []
    assert memory_backends.blobs.list(memory_settings.names.outputs_bucket, f"{job.user_id}/jobs/{job.id}/") == []


class _SilentPull(StreamingPull):
    """A pull the backend stopped serving: it delivers nothing and never ends on its own."""

    def __init__(self, healthy: bool = True) -> None:
        self.cancelled = threading.Event()
        self._healthy = healthy

    def cancel(self) -> None:
        self.cancelled.set()

    def wait(self, timeout: float | None = None) -> None:
        self.cancelled.wait(timeout)

    def healthy(self) -> bool:
        return self._healthy


class _StuckFirst(Subscriber):
    """The first subscribe gets a silent pull; later ones reach the memory fake."""

    def __init__(self, real: Subscriber, first: _SilentPull) -> None:
        self.real = real
        self.first = first
        self.subscribes = 0

    def subscribe(self, subscription: str, callback: Any, **kwargs: Any) -> StreamingPull:
        self.subscribes += 1
        if self.subscribes == 1:
            return self.first
        return self.real.subscribe(subscription, callback, **kwargs)

    def pull(self, subscription: str, max_messages: int = 10, *, timeout: float = 5.0) -> list[Any]:
        return self.real.pull(subscription, max_messages, timeout=timeout)


def test_a_pull_that_receives_nothing_while_jobs_wait_is_reopened(
    memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    silent = _SilentPull()
    subscriber = _StuckFirst(memory_backends.pubsub, silent)
    worker = Worker(
        worker_settings(memory_settings),
        documents=memory_backends.documents,
        blobs=memory_backends.blobs,
        subscriber=subscriber,
        runner=FakeRunner(),
        worker_id="stuck-worker",
    )
    worker.start()
    try:
        job = create_job(memory_backends.documents, memory_settings)
        publish(memory_backends.pubsub, memory_settings, job)
        wait_for(lambda: succeeded(memory_backends, job.id), 15, "the job to run on the reopened pull")
        assert silent.cancelled.is_set() and subscriber.subscribes == 2 and worker.pull_reopened == 1
    finally:
        worker.request_stop()
        worker.shutdown(grace_seconds=2)


def test_healthz_says_so_when_the_worker_cannot_pull(
    memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    worker = Worker(
        worker_settings(memory_settings),
        documents=memory_backends.documents,
        blobs=memory_backends.blobs,
        subscriber=_StuckFirst(memory_backends.pubsub, _SilentPull(healthy=False)),
        runner=FakeRunner(),
        worker_id="cut-off-worker",
    )
    worker.start()
    try:
        assert worker.status()["status"] == "cannot_pull"
    finally:
        worker.request_stop()
        worker.shutdown(grace_seconds=2)


def test_a_message_that_cannot_be_settled_still_leaves_the_worker(
    make_worker: WorkerFactory,
    memory_backends: MemoryBackends,
    memory_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A nack that fails (the backend is down) must not leave the job looking in flight here for
    ever: the worker forgets it, and the message comes back when its lease lapses."""
    import adapters.memory.pubsub as memory_pubsub
    from core.ports import BackendUnavailable

    def broken(self: Any) -> None:
        raise BackendUnavailable("nack: the emulator is down")

    monkeypatch.setattr(memory_pubsub._MemoryMessage, "nack", broken)
    failing = FakeRunner(fail_with=TransientError("CUDA error"))
    worker = make_worker(failing)
    job = create_job(memory_backends.documents, memory_settings)
    publish(memory_backends.pubsub, memory_settings, job)
    wait_for(lambda: failing.calls, 10, "the job to run and fail")
    wait_for(lambda: worker.status()["jobs_in_flight"] == 0, 10, "the worker to forget the job")
