"""Forward-only job transitions through `core.ledger.JobLedger` on every document store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from core import collection_names as c
from core.errors import InvalidTransition
from core.jobs import Job, JobStatus
from core.ledger import JobLedger, Transition
from core.timeutil import day_key, utcnow
from tests.contract.conftest import ContractBackend


def _queued_job(backend: ContractBackend) -> Job:
    now = utcnow()
    user_id = f"contract-{uuid.uuid4().hex[:8]}"
    job = Job(
        id=f"job_{uuid.uuid4().hex}",
        user_id=user_id,
        status=JobStatus.QUEUED,
        input={"prompt": "a lighthouse", "num_images": 1, "num_inference_steps": 4, "width": 64, "height": 64},
        model_name="tiny-sd",
        created_at=now,
        updated_at=now,
        quota_day=day_key(now),  # as `JobLedger.admit` records it
    )
    docs = backend.documents
    docs.create(c.JOBS, job.id, job.to_document())
    docs.set(c.QUOTAS, user_id, {"active_jobs": 1, "day": day_key(now), "day_images": 1})
    backend._cleanups += [
        lambda: docs.delete(c.JOBS, job.id),
        lambda: docs.delete(c.USAGE, job.id),
        lambda: docs.delete(c.QUOTAS, user_id),
    ]
    return job


def _race(*moves: Callable[[], Transition]) -> tuple[list[Transition], list[Exception]]:
    """Run the moves at the same moment on their own threads."""
    start = threading.Barrier(len(moves))
    results: list[Transition] = []
    errors: list[Exception] = []

    def run(move: Callable[[], Transition]) -> None:
        start.wait(timeout=10)
        try:
            results.append(move())
        except InvalidTransition as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in moves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def test_two_workers_finishing_one_job_bill_it_once(backend: ContractBackend) -> None:
    ledger = JobLedger(backend.documents)
    job = _queued_job(backend)
    ledger.transition(job.id, JobStatus.RUNNING)

    def finish_with(status: JobStatus) -> Callable[[], Transition]:
        return lambda: ledger.transition(job.id, status)

    results, errors = _race(finish_with(JobStatus.SUCCEEDED), finish_with(JobStatus.FAILED))

    assert len(results) == 1 and len(errors) == 1  # exactly one worker moved the job
    winner = results[0].job.status
    assert ledger.require(job.id).status is winner
    usage = backend.documents.get(c.USAGE, job.id)
    assert usage is not None and usage["status"] == winner.value
    # the slot was released once, and the image the job never produced was refunded once
    quota = backend.documents.get(c.QUOTAS, job.user_id)
    assert quota == {"active_jobs": 0, "day": day_key(job.created_at), "day_images": 0}


def test_a_duplicate_finish_changes_nothing(backend: ContractBackend) -> None:
    ledger = JobLedger(backend.documents)
    job = _queued_job(backend)
    ledger.transition(job.id, JobStatus.RUNNING)

    results, errors = _race(*(lambda: ledger.transition(job.id, JobStatus.SUCCEEDED) for _ in range(2)))

    assert errors == []
    assert sorted(r.changed for r in results) == [False, True]
    usage = backend.documents.get(c.USAGE, job.id)
    assert usage is not None and usage["status"] == "succeeded"
    quota = backend.documents.get(c.QUOTAS, job.user_id)
    assert quota is not None and quota["active_jobs"] == 0


def test_a_terminal_job_never_moves_back(backend: ContractBackend) -> None:
    ledger = JobLedger(backend.documents)
    job = _queued_job(backend)
    ledger.transition(job.id, JobStatus.CANCELLED)

    for target in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        try:
            ledger.transition(job.id, target)
        except InvalidTransition:
            continue
        raise AssertionError(f"a cancelled job became {target.value}")
    assert ledger.require(job.id).status is JobStatus.CANCELLED
