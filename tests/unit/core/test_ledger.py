"""The job ledger on the memory document store: lifecycle guard plus the bookkeeping that
commits with it (usage record, quota, batch counters)."""

import datetime as dt
import threading

import pytest

from adapters.memory import MemoryDocumentStore
from core import collection_names as c
from core.batches import Batch, BatchStatus
from core.errors import InvalidTransition, NotFoundError, ResourceExhausted
from core.jobs import Job, JobOutput, JobStatus
from core.ledger import JobLedger
from core.users import User, UserLimits

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return NOW


def make_user(max_concurrent: int = 2, daily_images: int = 5) -> User:
    return User("alice", "Alice", NOW, UserLimits(max_concurrent, daily_images, 60))


def make_job(job_id: str, images: int = 1, batch_id: str | None = None) -> Job:
    return Job(
        id=job_id,
        user_id="alice",
        status=JobStatus.QUEUED,
        input={"prompt": "x", "num_images": images, "num_inference_steps": 4, "width": 64, "height": 64},
        model_name="tiny-sd",
        created_at=NOW,
        updated_at=NOW,
        batch_id=batch_id,
    )


@pytest.fixture
def store() -> MemoryDocumentStore:
    return MemoryDocumentStore()


@pytest.fixture
def ledger(store: MemoryDocumentStore) -> JobLedger:
    return JobLedger(store, clock=clock)


def admit(store: MemoryDocumentStore, ledger: JobLedger, user: User, job: Job) -> None:
    store.transaction(lambda tx: ledger.admit(tx, user, job))


def output(job: Job, index: int) -> JobOutput:
    name = f"alice/jobs/{job.id}/{index}.png"
    return JobOutput(index, f"gs://out/{name}", "image/png", 64, 64, 1 + index, "out", name)


def test_admission_enforces_concurrency_and_daily_images(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    user = make_user(max_concurrent=2, daily_images=5)
    admit(store, ledger, user, make_job("j1", images=2))
    admit(store, ledger, user, make_job("j2", images=2))
    with pytest.raises(ResourceExhausted, match="concurrency limit"):
        admit(store, ledger, user, make_job("j3"))
    assert store.get(c.JOBS, "j3") is None
    ledger.transition("j1", JobStatus.RUNNING)
    ledger.transition("j1", JobStatus.SUCCEEDED, lambda j: j.outputs.extend([output(j, 0), output(j, 1)]))
    with pytest.raises(ResourceExhausted, match="daily image quota") as err:
        admit(store, ledger, user, make_job("j4", images=2))
    assert err.value.retry_after_seconds == 12 * 3600
    admit(store, ledger, user, make_job("j5", images=1))


def test_terminal_transition_bills_once_and_releases_quota(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    user = make_user()
    job = make_job("j1", images=2)
    admit(store, ledger, user, job)
    running = ledger.transition("j1", JobStatus.RUNNING)
    assert running.job.started_at == NOW and running.job.attempts == 1
    done = ledger.transition("j1", JobStatus.SUCCEEDED, lambda j: j.outputs.extend([output(j, 0), output(j, 1)]))
    assert done.changed and done.job.progress == 1.0
    again = ledger.transition("j1", JobStatus.SUCCEEDED)
    assert not again.changed
    usage = store.get(c.USAGE, "j1")
    assert usage is not None and usage["images"] == 2 and usage["status"] == "succeeded"
    assert len(list(store.iterate(c.USAGE))) == 1
    quota = store.get(c.QUOTAS, "alice")
    assert quota == {"active_jobs": 0, "day": "2026-11-21", "day_images": 2}
    with pytest.raises(InvalidTransition):
        ledger.transition("j1", JobStatus.RUNNING)


def test_jobs_that_produce_nothing_refund_their_images(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    admit(store, ledger, make_user(), make_job("j1", images=3))
    ledger.transition("j1", JobStatus.CANCELLED)
    assert store.get(c.QUOTAS, "alice") == {"active_jobs": 0, "day": "2026-11-21", "day_images": 0}
    assert store.get(c.USAGE, "j1")["images"] == 0  # type: ignore[index]


def test_unknown_job(ledger: JobLedger) -> None:
    with pytest.raises(NotFoundError):
        ledger.transition("nope", JobStatus.RUNNING)


def test_batch_counts_and_completion(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    batch = Batch("b1", "alice", "gs://in/alice/x.jsonl", BatchStatus.RUNNING, NOW, NOW, jobs_total=2)
    store.create(c.BATCHES, "b1", batch.to_document())
    user = make_user()
    for job_id in ("j1", "j2"):
        admit(store, ledger, user, make_job(job_id, batch_id="b1"))
    first = ledger.transition("j1", JobStatus.FAILED)
    assert first.completed_batch is None
    second = ledger.transition("j2", JobStatus.CANCELLED)
    assert second.completed_batch is not None and second.completed_batch.status is BatchStatus.COMPLETED
    stored = Batch.from_document("b1", store.get(c.BATCHES, "b1"))  # type: ignore[arg-type]
    assert (stored.failed, stored.cancelled, stored.status) == (1, 1, BatchStatus.COMPLETED)


def test_two_concurrent_finishers_bill_once(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    admit(store, ledger, make_user(), make_job("j1"))
    ledger.transition("j1", JobStatus.RUNNING)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def finish(target: JobStatus) -> None:
        barrier.wait()
        try:
            results.append(ledger.transition("j1", target).changed)
        except InvalidTransition as exc:
            results.append(exc)

    threads = [threading.Thread(target=finish, args=(s,)) for s in (JobStatus.SUCCEEDED, JobStatus.CANCELLED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results.count(True) == 1
    assert len(list(store.iterate(c.USAGE))) == 1
    assert store.get(c.QUOTAS, "alice")["active_jobs"] == 0  # type: ignore[index]


def test_a_batch_summary_stays_due_until_written(store: MemoryDocumentStore, ledger: JobLedger) -> None:
    """If whoever completed a batch never wrote its summary, the next finisher of any of its
    jobs (a redelivery, say) is handed the batch again; once the summary exists, nobody is."""
    batch = Batch("b1", "alice", "gs://in/alice/x.jsonl", BatchStatus.RUNNING, NOW, NOW, jobs_total=1)
    store.create(c.BATCHES, "b1", batch.to_document())
    admit(store, ledger, make_user(), make_job("j1", batch_id="b1"))
    first = ledger.transition("j1", JobStatus.CANCELLED)
    assert first.completed_batch is not None  # ...and suppose its summary write then failed
    duplicate = ledger.transition("j1", JobStatus.CANCELLED)
    assert not duplicate.changed and duplicate.completed_batch is not None
    store.update(c.BATCHES, "b1", {"summary_uri": "gs://out/alice/batches/b1/summary.json"})
    assert ledger.transition("j1", JobStatus.CANCELLED).completed_batch is None
    assert ledger.complete_batch_if_done("b1") is None


def test_running_jobs_whose_worker_went_silent_are_taken_over_once(store: MemoryDocumentStore) -> None:
    times = iter([NOW, NOW, NOW + dt.timedelta(seconds=100), NOW + dt.timedelta(seconds=100)])
    ledger = JobLedger(store, clock=lambda: next(times, NOW + dt.timedelta(seconds=100)))
    admit(store, ledger, make_user(), make_job("j1"))
    ledger.transition("j1", JobStatus.RUNNING)  # updated_at = NOW
    stale_before = NOW + dt.timedelta(seconds=30)
    assert [j.id for j in ledger.waiting_since(JobStatus.RUNNING, stale_before)] == ["j1"]
    taken = ledger.take_over("j1", JobStatus.RUNNING, stale_before)
    assert taken is not None and taken.requeues == 1 and taken.worker_id is None
    assert ledger.take_over("j1", JobStatus.RUNNING, stale_before) is None  # another reconciler got there first
    assert ledger.waiting_since(JobStatus.RUNNING, stale_before) == []


def test_a_dead_letter_of_a_superseded_message_changes_nothing(store: MemoryDocumentStore) -> None:
    from adapters.memory import MemoryBlobStore
    from core.dead_letters import DeadLetterHandler
    from core.job_messages import requeue_of
    from core.settings import Settings

    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    ledger = JobLedger(store, clock=clock)
    admit(store, ledger, make_user(), make_job("j1"))
    ledger.transition("j1", JobStatus.RUNNING)
    requeued = ledger.take_over("j1", JobStatus.RUNNING, NOW + dt.timedelta(seconds=1))
    assert requeued is not None and requeued.requeues == 1
    handler = DeadLetterHandler(store, MemoryBlobStore(), settings)
    assert not handler.handle("j1", requeue=requeue_of({})).failed  # the original message: superseded
    assert ledger.require("j1").status is JobStatus.RUNNING
    assert handler.handle("j1", requeue=requeue_of({"requeue": "1"})).failed  # the live message gave up
    assert ledger.require("j1").error.code == "dead_lettered"  # type: ignore[union-attr]
