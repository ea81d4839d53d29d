"""The functions against the local emulators (Firestore, Pub/Sub, fake-gcs-server) through
the real google-cloud clients: concurrency, idempotency, limits and isolation for real."""

from __future__ import annotations

import base64
import json
import pathlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from adapters.bootstrap import bootstrap
from core import collection_names as c
from core.batches import batch_id_for
from core.settings import Settings
from functions import wiring

MAIN = str(pathlib.Path(__file__).resolve().parents[3] / "functions" / "main.py")
JOB = {"prompt": "a harbour in fog", "width": 64, "height": 64, "num_inference_steps": 2}


@pytest.fixture
def services(emulator_settings: Settings) -> Iterator[wiring.Services]:
    yield wiring.install(emulator_settings, bootstrap(emulator_settings))
    wiring.reset()


def app(target: str) -> Any:
    return functions_framework.create_app(target=target, source=MAIN)


def caller(services: wiring.Services, user_id: str, **limits: int) -> dict[str, str]:
    services.accounts.create_user(user_id, user_id=user_id)
    if limits:
        services.accounts.set_limits(user_id, **limits)
    return {"Authorization": f"Bearer {services.accounts.create_key(user_id).plain}"}


def pull_jobs(services: wiring.Services, timeout: float = 3.0) -> list[Any]:
    messages = services.backends.subscriber.pull(services.settings.names.jobs_subscription, 100, timeout=timeout)
    for m in messages:
        m.ack()
    return messages


def in_parallel(n: int, fn: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def test_submitted_job_lands_in_firestore_and_on_the_jobs_topic(services):
    headers = caller(services, "alice")
    response = app("api").test_client().post("/v1/jobs", json=JOB, headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    stored = services.backends.documents.get(c.JOBS, job_id)
    assert stored is not None and stored["status"] == "queued" and stored["user_id"] == "alice"
    [message] = pull_jobs(services)
    assert message.data == job_id.encode() and message.attributes["job_id"] == job_id


def test_twenty_concurrent_submits_with_one_idempotency_key_make_one_job(services):
    headers = {**caller(services, "alice", max_concurrent_jobs=50), "Idempotency-Key": "checkout-42"}
    api = app("api")
    responses = in_parallel(20, lambda _: api.test_client().post("/v1/jobs", json=JOB, headers=headers))
    statuses = [r.status_code for r in responses]
    assert statuses == [202] * 20, [r.get_json() for r in responses]
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert len(list(services.backends.documents.iterate(c.JOBS))) == 1
    assert len(pull_jobs(services)) == 1
    quota = services.backends.documents.get(c.QUOTAS, "alice")
    assert quota is not None and quota["active_jobs"] == 1


def test_user_at_concurrency_limit_gets_429_and_nothing_is_published(services):
    headers = caller(services, "alice", max_concurrent_jobs=2)
    client = app("api").test_client()
    assert [client.post("/v1/jobs", json=JOB, headers=headers).status_code for _ in range(2)] == [202, 202]
    assert len(pull_jobs(services)) == 2
    refused = client.post("/v1/jobs", json=JOB, headers=headers)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert pull_jobs(services, timeout=2.0) == []
    assert len(list(services.backends.documents.iterate(c.JOBS))) == 2


def test_user_b_cannot_read_list_cancel_or_infer_user_a_jobs(services):
    alice, bob = caller(services, "alice"), caller(services, "bob")
    client = app("api").test_client()
    job_id = client.post("/v1/jobs", json=JOB, headers=alice).get_json()["id"]
    for response in (
        client.get(f"/v1/jobs/{job_id}", headers=bob),
        client.post(f"/v1/jobs/{job_id}:cancel", headers=bob),
    ):
        assert response.status_code == 404
    foreign = client.get(f"/v1/jobs/{job_id}", headers=bob).get_json()["error"]
    unknown = client.get("/v1/jobs/job_0000", headers=bob).get_json()["error"]
    assert foreign["code"] == unknown["code"] == "not_found"
    assert foreign["message"].replace(job_id, "?") == unknown["message"].replace("job_0000", "?")
    assert client.get("/v1/jobs", headers=bob).get_json()["jobs"] == []
    assert client.get("/v1/usage", headers=bob).get_json()["active_jobs"] == 0
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["status"] == "queued"


def upload_event(attributes: dict[str, str]) -> tuple[dict[str, str], bytes]:
    event = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/test"},
        {"message": {"data": base64.b64encode(b"{}").decode(), "attributes": attributes, "messageId": "1"}},
    )
    return to_structured(event)


def test_same_upload_event_delivered_five_times_concurrently_makes_one_batch(services):
    caller(services, "alice")
    body = "\n".join([json.dumps(JOB), json.dumps({"prompt": "x", "height": 9}), json.dumps(JOB)]).encode()
    info = services.backends.blobs.write(services.settings.names.inbox_bucket, "alice/five.jsonl", body)
    attrs = {
        "bucketId": info.bucket,
        "objectId": info.name,
        "objectGeneration": str(info.generation),
        "eventType": "OBJECT_FINALIZE",
    }
    on_upload = app("on_upload")
    headers, data = upload_event(attrs)
    statuses = in_parallel(5, lambda _: on_upload.test_client().post("/", headers=headers, data=data).status_code)
    assert statuses == [200] * 5
    batch_id = batch_id_for(info.bucket, info.name, info.generation)
    assert [d.id for d in services.backends.documents.iterate(c.BATCHES)] == [batch_id]
    jobs = [d.data for d in services.backends.documents.iterate(c.JOBS)]
    assert sorted(j["batch_line"] for j in jobs) == [1, 3]
    assert len(pull_jobs(services)) == 2
    quota = services.backends.documents.get(c.QUOTAS, "alice")
    assert quota is not None and quota["active_jobs"] == 2
    errors = services.backends.blobs.read(
        services.settings.names.outputs_bucket, f"alice/batches/{batch_id}/errors.jsonl"
    )
    [row] = [json.loads(line) for line in errors.decode().splitlines()]
    assert row["line"] == 2 and row["error"]["details"][0]["field"] == "height"


@pytest.fixture
def on_upload_process(emulator_suite: Any, emulator_settings: Settings, tmp_path: pathlib.Path) -> Iterator[str]:
    """A real `functions-framework --target on_upload` process on a free port."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    framework = pathlib.Path(sys.executable).with_name("functions-framework")
    log = open(tmp_path / "on_upload.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(framework), "--target", "on_upload", "--source", MAIN, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **emulator_suite.env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url, timeout=1)  # a GET answers 405 once the server listens
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError((tmp_path / "on_upload.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_emulator_push_subscription_delivers_uploads_to_the_function(services, on_upload_process):
    """The local upload path (README, "Architecture"): fake-gcs-server's notification -> uploads topic -> a push
    subscription -> a raw Pub/Sub push request that functions-framework turns into a CloudEvent."""
    import time
    import uuid

    from core.ports import SubscriptionSpec

    names = services.settings.names
    services.backends.messaging_admin.ensure_subscription(
        SubscriptionSpec(
            name=f"push-{uuid.uuid4().hex[:8]}", topic=names.uploads_topic, push_endpoint=on_upload_process
        )
    )
    caller(services, "alice")
    body = "\n".join([json.dumps(JOB), json.dumps({"prompt": "x", "colour": "red"}), json.dumps(JOB)]).encode()
    info = services.backends.blobs.write(names.inbox_bucket, "alice/pushed.jsonl", body)
    batch_id = batch_id_for(info.bucket, info.name, info.generation)
    deadline = time.monotonic() + 60
    published: list[Any] = []

    def ingested() -> bool:
        # The trigger records errors_uri when ingestion ends (after publishing and errors.jsonl).
        batch = services.backends.documents.get(c.BATCHES, batch_id)
        return batch is not None and batch.get("errors_uri") is not None

    # Messages and the batch's final state are each awaited; they need not show up in the same round.
    while not ingested() or len(published) < 2:
        assert time.monotonic() < deadline, "the pushed upload never became a batch with two queued jobs"
        published += pull_jobs(services, 1.0)
    jobs = [d.data for d in services.backends.documents.iterate(c.JOBS)]
    assert sorted(j["batch_line"] for j in jobs) == [1, 3]
    errors = services.backends.blobs.read(names.outputs_bucket, f"alice/batches/{batch_id}/errors.jsonl")
    assert json.loads(errors.decode().splitlines()[0])["error"]["details"][0]["field"] == "colour"
