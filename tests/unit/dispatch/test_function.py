"""The `dispatch` entry point through functions-framework, over the hand-written fakes."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import flask
import functions_framework
import pytest

from core.dispatch import Dispatcher, DispatchPolicy
from core.settings import Settings
from functions import dispatch as dispatch_module
from tests.unit.dispatch.fakes import FakeBacklog, FakeWorkerJobs

MAIN = str(pathlib.Path(__file__).resolve().parents[3] / "functions" / "main.py")


@pytest.fixture
def fakes() -> Iterator[tuple[FakeBacklog, FakeWorkerJobs]]:
    settings = Settings.from_env({"GPUPIPE_ENV": "test", "GPUPIPE_DISPATCH_MAX_WORKERS": "3"})
    reader, workers = FakeBacklog(0), FakeWorkerJobs()
    dispatch_module.install(dispatch_module.build_dispatcher(settings, backlog=reader, workers=workers))
    yield reader, workers
    dispatch_module.install(None)


@pytest.fixture
def client(fakes: tuple[FakeBacklog, FakeWorkerJobs]) -> flask.testing.FlaskClient:
    # functions/main.py is what Cloud Functions loads (ops/package_functions.py re-exports it).
    return functions_framework.create_app(target="dispatch", source=MAIN).test_client()


def test_scheduler_tick_starts_workers_for_the_backlog(
    client: flask.testing.FlaskClient, fakes: tuple[FakeBacklog, FakeWorkerJobs]
) -> None:
    reader, workers = fakes
    reader.undelivered = 17
    response = client.post("/", json={"reason": "schedule"})
    assert response.status_code == 200
    assert response.get_json() == {
        "backlog": 17,
        "running": 0,
        "wanted": 3,
        "started": 3,
        "operation": "operations/op-1",
    }
    assert reader.asked == [Settings.from_env({"GPUPIPE_ENV": "test"}).names.jobs_subscription]
    # A second tick while those boot starts nothing.
    assert client.post("/").get_json()["started"] == 0
    assert workers.started == [3]


def test_nudge_hint_starts_a_worker_before_the_metric_shows_the_job(
    client: flask.testing.FlaskClient, fakes: tuple[FakeBacklog, FakeWorkerJobs]
) -> None:
    response = client.post("/", json={"reason": "submit", "queued": 1})
    assert response.status_code == 200 and response.get_json()["started"] == 1
    assert fakes[1].started == [1]


@pytest.mark.parametrize("body", [{"queued": -1}, {"queued": "3"}, {"queued": True}, [1, 2]])
def test_a_bad_body_is_a_400_naming_the_field(client: flask.testing.FlaskClient, body: object) -> None:
    response = client.post("/", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_argument"


def test_get_is_refused(client: flask.testing.FlaskClient) -> None:
    assert client.get("/").status_code == 405


def test_monitoring_down_is_a_503_with_retry_after(
    client: flask.testing.FlaskClient, fakes: tuple[FakeBacklog, FakeWorkerJobs]
) -> None:
    fakes[0].down = True
    response = client.post("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert fakes[1].started == []


def test_without_a_worker_job_dispatch_says_so() -> None:
    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    with pytest.raises(dispatch_module.NotConfigured, match="GPUPIPE_DISPATCH_WORKER_JOB"):
        dispatch_module.build_dispatcher(settings, backlog=FakeBacklog())


def test_settings_wire_the_policy() -> None:
    settings = Settings.from_env(
        {"GPUPIPE_ENV": "test", "GPUPIPE_DISPATCH_JOBS_PER_WORKER": "2", "GPUPIPE_DISPATCH_MAX_WORKERS": "5"}
    )
    workers = FakeWorkerJobs()
    dispatcher: Dispatcher = dispatch_module.build_dispatcher(settings, backlog=FakeBacklog(7), workers=workers)
    assert dispatcher.run().started == 4
    assert DispatchPolicy(jobs_per_worker=2, max_workers=5).workers_wanted(7) == 4
