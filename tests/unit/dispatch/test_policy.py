"""The dispatch rule: backlog -> workers requested, capped, idempotent, nothing for no backlog."""

from __future__ import annotations

import pytest

from core.dispatch import Dispatcher, DispatchPolicy
from tests.unit.dispatch.fakes import FakeBacklog, FakeWorkerJobs

SUBSCRIPTION = "gpupipe-test-jobs-worker"


def make(
    backlog: int, *, running: int = 0, per_worker: int = 8, cap: int = 4
) -> tuple[Dispatcher, FakeBacklog, FakeWorkerJobs]:
    reader, workers = FakeBacklog(backlog), FakeWorkerJobs(running)
    policy = DispatchPolicy(jobs_per_worker=per_worker, max_workers=cap)
    return Dispatcher(reader, workers, policy, subscription=SUBSCRIPTION), reader, workers


@pytest.mark.parametrize(
    ("backlog", "expected"),
    [(1, 1), (8, 1), (9, 2), (16, 2), (17, 3), (32, 4)],
)
def test_backlog_sizes_the_execution(backlog: int, expected: int) -> None:
    dispatcher, reader, workers = make(backlog)
    result = dispatcher.run()
    assert workers.started == [expected]
    assert (result.backlog, result.running, result.wanted, result.started) == (backlog, 0, expected, expected)
    assert result.operation == "operations/op-1"
    assert reader.asked == [SUBSCRIPTION]


def test_requests_are_capped_by_max_workers() -> None:
    dispatcher, _, workers = make(10_000, cap=4)
    assert dispatcher.run().started == 4
    assert workers.started == [4]


def test_only_the_difference_to_running_workers_is_started() -> None:
    dispatcher, _, workers = make(24, running=1)
    assert dispatcher.run().started == 2
    assert workers.started == [2]


def test_idempotent_when_enough_are_already_running() -> None:
    dispatcher, _, workers = make(20)
    first = dispatcher.run()
    second = dispatcher.run()
    assert (first.started, second.started) == (3, 0)
    assert second.running == 3 and second.operation is None
    assert workers.started == [3]


def test_starts_again_when_workers_exited_with_backlog_left() -> None:
    dispatcher, _, workers = make(20)
    dispatcher.run()
    workers.finish(2)
    assert dispatcher.run().started == 2
    assert workers.started == [3, 2]


def test_zero_backlog_starts_nothing_and_does_not_list_executions() -> None:
    dispatcher, _, workers = make(0)
    result = dispatcher.run()
    assert (result.started, result.wanted, result.running) == (0, 0, None)
    assert workers.started == [] and workers.lookups == 0


def test_a_running_surplus_is_left_alone() -> None:
    dispatcher, _, workers = make(1, running=4)
    assert dispatcher.run().started == 0
    assert workers.started == []


def test_the_hint_is_a_lower_bound_on_a_lagging_metric() -> None:
    dispatcher, _, workers = make(0)
    assert dispatcher.run(queued_hint=1).started == 1
    dispatcher_big, _, workers_big = make(30)
    assert dispatcher_big.run(queued_hint=1).backlog == 30
    assert workers.started == [1] and workers_big.started == [4]


def test_cap_zero_disables_dispatch_without_reading_anything() -> None:
    dispatcher, reader, workers = make(100, cap=0)
    assert dispatcher.run().started == 0
    assert reader.asked == [] and workers.lookups == 0


@pytest.mark.parametrize(("per_worker", "cap"), [(0, 4), (8, -1)])
def test_policy_rejects_nonsense(per_worker: int, cap: int) -> None:
    with pytest.raises(ValueError, match="must be at least"):
        DispatchPolicy(jobs_per_worker=per_worker, max_workers=cap)
