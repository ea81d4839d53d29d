"""Exclusive claims, the reconciler and the dead-letter policy on the memory fakes."""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest

from adapters.memory import MemoryBackends
from core import collection_names as c
from core import execution
from core.dead_letters import DeadLetterHandler
from core.errors import ClaimHeld, ClaimLost
from core.jobs import Job, JobOutput, JobStatus
from core.ledger import JobLedger
from core.reconciler import Reconciler
from core.settings import Settings
from core.timeutil import utcnow
from tests.unit.worker.support import create_job

Clock = list[dt.datetime]


@pytest.fixture
def now() -> Clock:
    return [utcnow()]


@pytest.fixture
def ledger(memory_backends: MemoryBackends, now: Clock) -> JobLedger:
    return JobLedger(memory_backends.documents, clock=lambda: now[0])


def reconciler(backends: MemoryBackends, settings: Settings, now: Clock, seed: int = 0) -> Reconciler:
    return Reconciler(
        backends.documents,
        backends.blobs,
        backends.pubsub,
        settings,
        clock=lambda: now[0],
        rng=random.Random(seed),
    )


def later(now: Clock, seconds: float) -> None:
    now[0] += dt.timedelta(seconds=seconds)


def job_messages(backends: MemoryBackends, settings: Settings) -> list[dict[str, str]]:
    return [dict(m.attributes) for m in backends.pubsub.pull(settings.names.jobs_subscription, 100, timeout=0.2)]


def output(job: Job) -> JobOutput:
    name = f"{job.user_id}/jobs/{job.id}/0.png"
    return JobOutput(0, f"gs://out/{name}", "image/png", 64, 64, 1, "out", name)


def claim(ledger: JobLedger, job_id: str, worker: str, now: Clock, stale_seconds: float = 30):
    stale_before = now[0] - dt.timedelta(seconds=stale_seconds)
    return execution.claim(ledger, job_id, worker_id=worker, model_version="v1", stale_before=stale_before)


# ---------------------------------------------------------------------- exclusive claims
def test_a_job_a_live_worker_holds_cannot_be_claimed_by_another(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    job = create_job(memory_backends.documents, memory_settings)
    _, first = claim(ledger, job.id, "worker-a", now)
    with pytest.raises(ClaimHeld):
        claim(ledger, job.id, "worker-b", now)  # a duplicate delivery to a second worker
    later(now, 31)  # worker-a stopped heartbeating
    _, second = claim(ledger, job.id, "worker-b", now)
    assert (first.token, second.token) == (1, 2)


def test_a_worker_that_lost_its_claim_cannot_complete_or_fail_the_job(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    job = create_job(memory_backends.documents, memory_settings)
    _, stale_claim = claim(ledger, job.id, "worker-a", now)
    later(now, 31)
    _, live_claim = claim(ledger, job.id, "worker-b", now)
    with pytest.raises(ClaimLost):
        execution.complete(
            ledger, job.id, outputs=[output(job)], gpu_seconds=1.0, model_version="v1", claim=stale_claim
        )
    with pytest.raises(ClaimLost):
        execution.fail(ledger, job.id, code="x", message="y", claim=stale_claim)
    assert memory_backends.documents.get(c.USAGE, job.id) is None  # nothing billed by the loser
    done = execution.complete(
        ledger, job.id, outputs=[output(job)], gpu_seconds=1.0, model_version="v1", claim=live_claim
    )
    assert done.changed and done.job.worker_id == "worker-b"
    assert memory_backends.documents.get(c.USAGE, job.id) is not None


def test_a_released_job_can_be_claimed_at_once_and_only_its_holder_releases_it(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    job = create_job(memory_backends.documents, memory_settings)
    _, held = claim(ledger, job.id, "worker-a", now)
    assert not ledger.release(job.id, worker_id="worker-b", token=held.token)
    assert not ledger.release(job.id, worker_id="worker-a", token=held.token + 1)
    assert ledger.release(job.id, worker_id="worker-a", token=held.token)
    _, taken = claim(ledger, job.id, "worker-b", now)  # no waiting for a stale heartbeat
    assert taken.token == 2


# ---------------------------------------------------------------------- the reconciler
def test_a_queued_job_whose_message_was_never_published_is_published_by_the_sweep(
    memory_backends: MemoryBackends, memory_settings: Settings, now: Clock
) -> None:
    """The api process died between admission and publish."""
    job = create_job(memory_backends.documents, memory_settings)
    sweeper = reconciler(memory_backends, memory_settings, now)
    assert sweeper.sweep().requeued == []  # not yet: it may still be in the backlog
    later(now, memory_settings.recovery.queued_after_seconds + 1)
    assert sweeper.sweep().requeued == [job.id]
    assert job_messages(memory_backends, memory_settings) == [
        {"job_id": job.id, "user_id": job.user_id, "model": "tiny-sd", "requeue": "1"}
    ]
    # Backoff: a job still waiting is published again only after twice the bound, then four times.
    later(now, memory_settings.recovery.queued_after_seconds + 1)
    assert sweeper.sweep().requeued == []
    later(now, memory_settings.recovery.queued_after_seconds)
    assert sweeper.sweep().requeued == [job.id]


def test_a_running_job_whose_worker_went_silent_is_redelivered_once_by_two_reconcilers(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    jobs = [create_job(memory_backends.documents, memory_settings) for _ in range(6)]
    for job in jobs:
        claim(ledger, job.id, "dead-worker", now)
    later(now, 60)
    sweepers = [reconciler(memory_backends, memory_settings, now, seed) for seed in (1, 2)]
    reports = []
    threads = [threading.Thread(target=lambda s=s: reports.append(s.sweep())) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    requeued = sorted(job_id for report in reports for job_id in report.requeued)
    assert requeued == sorted(job.id for job in jobs)  # each job exactly once, by one of the two
    messages = job_messages(memory_backends, memory_settings)
    assert sorted(m["job_id"] for m in messages) == requeued
    for job in jobs:
        current = ledger.require(job.id)
        assert (current.requeues, current.worker_id) == (1, None)


def test_a_job_that_used_up_its_attempts_is_failed_not_redelivered(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    """A job that kills every worker that runs it must not kill the fleet for ever."""
    job = create_job(memory_backends.documents, memory_settings)
    for attempt in range(memory_settings.recovery.max_attempts):
        claim(ledger, job.id, f"worker-{attempt}", now)
        later(now, 60)
    report = reconciler(memory_backends, memory_settings, now).sweep()
    assert report.failed == [job.id]
    failed = ledger.require(job.id)
    assert failed.status is JobStatus.FAILED and failed.error is not None and failed.error.code == "dead_lettered"
    assert memory_backends.documents.get(c.USAGE, job.id) is not None
    quota = memory_backends.documents.get(c.QUOTAS, job.user_id) or {}
    assert quota["active_jobs"] == 0


def test_one_unreadable_job_does_not_stop_the_sweep(
    memory_backends: MemoryBackends, memory_settings: Settings, now: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.ports import TransactionAborted

    jobs = [create_job(memory_backends.documents, memory_settings) for _ in range(3)]
    wedged = jobs[1].id
    sweeper = reconciler(memory_backends, memory_settings, now)
    real = JobLedger.take_over

    def take_over(self: JobLedger, job_id: str, status: JobStatus, before: dt.datetime) -> Job | None:
        if job_id == wedged:
            raise TransactionAborted("Transaction lock timeout")
        return real(self, job_id, status, before)

    monkeypatch.setattr(JobLedger, "take_over", take_over)
    later(now, memory_settings.recovery.queued_after_seconds + 1)
    report = sweeper.sweep()
    assert sorted(report.requeued) == sorted(j.id for j in jobs if j.id != wedged)
    assert report.errors == [wedged]


# ---------------------------------------------------------------------- dead letters
def test_a_dead_letter_of_a_job_no_worker_claimed_redelivers_it(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    """The message bounced off streams of dead workers: no worker tried the job, so it runs."""
    job = create_job(memory_backends.documents, memory_settings)
    handler = DeadLetterHandler(
        memory_backends.documents,
        memory_backends.blobs,
        memory_settings,
        reconciler=reconciler(memory_backends, memory_settings, now),
        clock=lambda: now[0],
    )
    assert not handler.handle(job.id, delivery_attempts=5).failed
    assert ledger.require(job.id).status is JobStatus.QUEUED
    assert [m["requeue"] for m in job_messages(memory_backends, memory_settings)] == ["1"]


def test_a_dead_letter_of_a_job_workers_kept_failing_fails_it(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    job = create_job(memory_backends.documents, memory_settings)
    for _ in range(memory_settings.recovery.max_attempts):
        _, held = claim(ledger, job.id, "worker", now)
        ledger.release(job.id, worker_id="worker", token=held.token)  # a transient failure, nacked
    handler = DeadLetterHandler(
        memory_backends.documents,
        memory_backends.blobs,
        memory_settings,
        reconciler=reconciler(memory_backends, memory_settings, now),
        clock=lambda: now[0],
    )
    assert handler.handle(job.id, delivery_attempts=5).failed
    assert ledger.require(job.id).error.code == "dead_lettered"  # type: ignore[union-attr]


def test_a_completed_batch_whose_summary_write_failed_gets_it_from_the_sweep(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    from core.batches import Batch, BatchStatus, summary_object_name

    batch = Batch("batch_lost", "user-one", "gs://in/user-one/a.jsonl", BatchStatus.COMPLETED, now[0], now[0])
    memory_backends.documents.create(c.BATCHES, batch.id, batch.to_document())
    report = reconciler(memory_backends, memory_settings, now).sweep()
    assert report.summaries == [batch.id]
    bucket = memory_settings.names.outputs_bucket
    assert memory_backends.blobs.stat(bucket, summary_object_name("user-one", batch.id)) is not None
    assert reconciler(memory_backends, memory_settings, now).sweep().summaries == []  # written once


def test_a_dead_letter_of_a_job_a_live_worker_holds_is_left_to_it_whatever_its_attempts(
    memory_backends: MemoryBackends, memory_settings: Settings, ledger: JobLedger, now: Clock
) -> None:
    job = create_job(memory_backends.documents, memory_settings)
    for attempt in range(memory_settings.recovery.max_attempts):
        later(now, 60)
        claim(ledger, job.id, f"worker-{attempt}", now)  # the last one is alive: just claimed
    handler = DeadLetterHandler(
        memory_backends.documents,
        memory_backends.blobs,
        memory_settings,
        reconciler=reconciler(memory_backends, memory_settings, now),
        clock=lambda: now[0],
    )
    assert not handler.handle(job.id, delivery_attempts=5).failed
    assert ledger.require(job.id).status is JobStatus.RUNNING
