"""`on_upload` and `on_dead_letter` through functions-framework, with CloudEvents built by the
`cloudevents` library and with raw Pub/Sub push bodies (what the emulator's push delivers)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from adapters.memory import MemoryBackends
from core import collection_names as c
from core import execution
from core.batches import batch_id_for
from core.jobs import JobStatus
from core.ledger import JobLedger
from core.timeutil import utcnow
from functions import wiring
from tests.unit.functions.conftest import Caller, make_app, new_caller

GOOD = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2}


def message_event(
    attributes: dict[str, str], data: bytes = b"", *, binary: bool = False
) -> tuple[dict[str, str], bytes]:
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/gpupipe-local/topics/gpupipe-local-uploads",
        },
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": "1234",
                "publishTime": "2030-01-01T00:00:00Z",
            },
            "subscription": "projects/gpupipe-local/subscriptions/gpupipe-local-uploads-handler",
        },
    )
    return to_binary(event) if binary else to_structured(event)


def upload(backends: MemoryBackends, services: wiring.Services, name: str, body: bytes) -> dict[str, str]:
    info = backends.blobs.write(services.settings.names.inbox_bucket, name, body)
    return {
        "bucketId": info.bucket,
        "objectId": info.name,
        "objectGeneration": str(info.generation),
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
    }


def deliver(client: Any, attributes: dict[str, str], *, binary: bool = False) -> Any:
    headers, body = message_event(attributes, binary=binary)
    return client.post("/", headers=headers, data=body)


def lines(*rows: Any) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def outputs(backends: MemoryBackends, services: wiring.Services, prefix: str) -> dict[str, bytes]:
    bucket = services.settings.names.outputs_bucket
    return {b.name: backends.blobs.read(bucket, b.name) for b in backends.blobs.list(bucket, prefix)}


def jobs_topic(backends: MemoryBackends, services: wiring.Services) -> list[Any]:
    return backends.pubsub.pull(services.settings.names.jobs_subscription, max_messages=100, timeout=0.2)


@pytest.fixture
def on_upload(services: wiring.Services) -> Any:
    return make_app("on_upload").test_client()


@pytest.fixture
def alice(services: wiring.Services) -> Caller:
    return new_caller(services, "alice")


# ---------------------------------------------------------------------- uploads
def test_upload_with_one_bad_line_makes_two_jobs_and_errors_jsonl(on_upload, alice, services, memory_backends):
    attrs = upload(
        memory_backends, services, "alice/run1/prompts.jsonl", lines(GOOD, {"prompt": "x", "width": 7}, GOOD)
    )
    assert deliver(on_upload, attrs).status_code == 200
    batch_id = batch_id_for(attrs["bucketId"], attrs["objectId"], attrs["objectGeneration"])
    jobs = [d.data for d in memory_backends.documents.iterate(c.JOBS)]
    assert sorted(j["batch_line"] for j in jobs) == [1, 3]
    assert {j["status"] for j in jobs} == {"queued"} and {j["batch_id"] for j in jobs} == {batch_id}
    assert len(jobs_topic(memory_backends, services)) == 2
    files = outputs(memory_backends, services, f"alice/batches/{batch_id}/")
    errors = [json.loads(row) for row in files[f"alice/batches/{batch_id}/errors.jsonl"].decode().splitlines()]
    assert [e["line"] for e in errors] == [2]
    assert errors[0]["error"]["code"] == "invalid_argument"
    assert errors[0]["error"]["details"][0]["field"] == "width"
    batch = memory_backends.documents.get(c.BATCHES, batch_id)
    assert (
        batch is not None and batch["jobs_total"] == 2 and batch["invalid_lines"] == 1 and batch["status"] == "running"
    )


def test_redelivered_events_create_nothing_new(on_upload, alice, services, memory_backends):
    attrs = upload(memory_backends, services, "alice/a.jsonl", lines(GOOD, GOOD, GOOD))
    statuses: list[int] = []

    def run() -> None:
        statuses.append(deliver(make_app("on_upload").test_client(), attrs).status_code)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    deliver(on_upload, attrs, binary=True)  # and once more, later, in binary mode
    assert statuses == [200] * 5
    assert len(list(memory_backends.documents.iterate(c.JOBS))) == 3
    assert len(list(memory_backends.documents.iterate(c.BATCHES))) == 1
    assert len(jobs_topic(memory_backends, services)) == 3
    quota = memory_backends.documents.get(c.QUOTAS, "alice")
    assert quota is not None and quota["active_jobs"] == 3 and quota["day_images"] == 3


def test_a_new_generation_of_the_same_name_is_a_new_batch(on_upload, alice, services, memory_backends):
    first = upload(memory_backends, services, "alice/a.jsonl", lines(GOOD))
    deliver(on_upload, first)
    second = upload(memory_backends, services, "alice/a.jsonl", lines(GOOD))
    deliver(on_upload, second)
    assert len(list(memory_backends.documents.iterate(c.BATCHES))) == 2
    assert len(list(memory_backends.documents.iterate(c.JOBS))) == 2


def test_raw_pubsub_push_body_is_accepted(on_upload, alice, services, memory_backends):
    attrs = upload(memory_backends, services, "alice/push.jsonl", lines(GOOD))
    push = {
        "message": {"data": base64.b64encode(b"{}").decode(), "attributes": attrs, "messageId": "77"},
        "subscription": "projects/gpupipe-local/subscriptions/gpupipe-local-uploads-handler",
        "deliveryAttempt": 1,
    }
    response = on_upload.post("/", json=push)
    assert response.status_code == 200
    assert len(list(memory_backends.documents.iterate(c.JOBS))) == 1


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("nobody/a.jsonl", lines(GOOD), "unknown_user"),
        ("alice/a.jsonl", b"\xff\xfe not utf-8", "invalid_encoding"),
        ("alice/a.txt", lines(GOOD), "invalid_argument"),
        ("alice/a.jsonl", b"prompt,width\nfox,64\n", "invalid_argument"),
        ("alice/a.jsonl", b"\n\n", "invalid_argument"),
    ],
)
def test_unreadable_uploads_are_rejected_whole(on_upload, alice, services, memory_backends, name, body, code):
    attrs = upload(memory_backends, services, name, body)
    assert deliver(on_upload, attrs).status_code == 200
    batch_id = batch_id_for(attrs["bucketId"], name, attrs["objectGeneration"])
    user = name.split("/")[0]
    files = outputs(memory_backends, services, f"{user}/batches/{batch_id}/")
    rejection = json.loads(files[f"{user}/batches/{batch_id}/rejected.json"])
    assert rejection["status"] == "rejected" and rejection["error"]["code"] == code
    assert list(memory_backends.documents.iterate(c.JOBS)) == []
    assert jobs_topic(memory_backends, services) == []


def test_too_large_and_too_many_lines_are_rejected(on_upload, alice, memory_settings, memory_backends):
    from adapters.bootstrap import bootstrap

    settings = memory_settings.model_copy(
        update={"request_limits": memory_settings.request_limits.model_copy(update={"max_upload_lines": 2})}
    )
    services = wiring.install(
        settings,
        bootstrap(
            settings, documents=memory_backends.documents, blobs=memory_backends.blobs, publisher=memory_backends.pubsub
        ),
    )
    attrs = upload(memory_backends, services, "alice/long.jsonl", lines(GOOD, GOOD, GOOD))
    deliver(on_upload, attrs)
    attrs_big = upload(
        memory_backends, services, "alice/big.jsonl", b"x" * (settings.request_limits.max_upload_bytes + 1)
    )
    deliver(on_upload, attrs_big)
    names = [b.name for b in memory_backends.blobs.list(settings.names.outputs_bucket, "alice/")]
    assert len([n for n in names if n.endswith("rejected.json")]) == 2
    assert list(memory_backends.documents.iterate(c.JOBS)) == []


def test_other_buckets_and_other_event_types_are_ignored(on_upload, alice, services, memory_backends):
    attrs = upload(memory_backends, services, "alice/a.jsonl", lines(GOOD))
    assert deliver(on_upload, {**attrs, "eventType": "OBJECT_DELETE"}).status_code == 200
    assert deliver(on_upload, {**attrs, "bucketId": "someone-elses-bucket"}).status_code == 200
    assert list(memory_backends.documents.iterate(c.JOBS)) == []
    assert memory_backends.blobs.list(services.settings.names.outputs_bucket) == []


def test_malformed_events_are_dropped_not_retried(on_upload, services):
    assert deliver(on_upload, {"unrelated": "attribute"}).status_code == 200


def test_lines_past_the_daily_quota_are_reported_not_run(on_upload, services, memory_backends):
    new_caller(services, "zoe", daily_images=2, max_concurrent_jobs=1)
    attrs = upload(memory_backends, services, "zoe/q.jsonl", lines(GOOD, GOOD, GOOD))
    deliver(on_upload, attrs)
    jobs = list(memory_backends.documents.iterate(c.JOBS))
    assert len(jobs) == 2, "the concurrency limit does not refuse batch lines; the daily quota does"
    batch_id = batch_id_for(attrs["bucketId"], attrs["objectId"], attrs["objectGeneration"])
    errors = outputs(memory_backends, services, f"zoe/batches/{batch_id}/errors.jsonl")
    [row] = [json.loads(r) for r in next(iter(errors.values())).decode().splitlines()]
    assert row["line"] == 3 and row["error"]["code"] == "resource_exhausted"


# ---------------------------------------------------------------------- dead letters
def dead_letter(client: Any, job_id: str) -> Any:
    headers, body = message_event({"job_id": job_id, "user_id": "alice"}, job_id.encode())
    return client.post("/", headers=headers, data=body)


def tried_by_workers(services: wiring.Services, job_id: str) -> None:
    """Workers claimed the job as often as the settings allow and gave it back each time."""
    ledger = JobLedger(services.backends.documents)
    for _ in range(services.settings.recovery.max_attempts):
        _, claim = execution.claim(ledger, job_id, worker_id="w", model_version="v", stale_before=utcnow())
        ledger.release(job_id, worker_id="w", token=claim.token)


def test_dead_letter_fails_the_job_releases_quota_and_completes_its_batch(on_upload, alice, services, memory_backends):
    attrs = upload(memory_backends, services, "alice/d.jsonl", lines(GOOD, {"prompt": ""}))
    deliver(on_upload, attrs)
    [job] = list(memory_backends.documents.iterate(c.JOBS))
    tried_by_workers(services, job.id)
    client = make_app("on_dead_letter").test_client()
    assert dead_letter(client, job.id).status_code == 200
    assert dead_letter(client, job.id).status_code == 200  # a duplicate changes nothing
    stored = JobLedger(memory_backends.documents).require(job.id)
    assert stored.status is JobStatus.FAILED and stored.error is not None and stored.error.code == "dead_lettered"
    assert memory_backends.documents.get(c.QUOTAS, "alice")["active_jobs"] == 0
    assert len(list(memory_backends.documents.iterate(c.USAGE))) == 1
    batch_id = batch_id_for(attrs["bucketId"], attrs["objectId"], attrs["objectGeneration"])
    batch = memory_backends.documents.get(c.BATCHES, batch_id)
    assert batch["status"] == "completed" and batch["failed"] == 1
    summary = json.loads(outputs(memory_backends, services, f"alice/batches/{batch_id}/summary.json").popitem()[1])
    assert summary["jobs"]["failed"] == 1 and summary["results"][0]["error"]["code"] == "dead_lettered"


def test_dead_letter_of_a_job_no_worker_tried_redelivers_it(on_upload, alice, services, memory_backends):
    """Its message only ever reached streams of dead workers: the job is published again."""
    attrs = upload(memory_backends, services, "alice/e.jsonl", lines(GOOD))
    deliver(on_upload, attrs)
    [job] = list(memory_backends.documents.iterate(c.JOBS))
    assert len(jobs_topic(memory_backends, services)) == 1  # the upload's own message
    assert dead_letter(make_app("on_dead_letter").test_client(), job.id).status_code == 200
    stored = JobLedger(memory_backends.documents).require(job.id)
    assert (stored.status, stored.requeues) == (JobStatus.QUEUED, 1)
    [message] = jobs_topic(memory_backends, services)
    assert message.attributes["requeue"] == "1"
    assert memory_backends.documents.get(c.USAGE, job.id) is None


def test_an_ingest_that_died_is_resumed_by_the_next_delivery(on_upload, alice, services, memory_backends):
    """The first delivery died after admitting every line and publishing one job (SIGKILL: its
    claim stays `ingesting`). The redelivery takes the claim over once it lapsed, publishes what
    was admitted, and the batch counts every line once."""
    attrs = upload(memory_backends, services, "alice/f.jsonl", lines(GOOD, GOOD, GOOD))
    batch_id = batch_id_for(attrs["bucketId"], attrs["objectId"], attrs["objectGeneration"])
    real_publish = type(memory_backends.pubsub).publish
    published: list[str] = []

    def dies_after_one(self: Any, topic: str, data: bytes, attributes: Any = None, **kw: Any) -> str:
        if published:
            raise _Killed()
        published.append(data.decode())
        return real_publish(self, topic, data, attributes, **kw)

    import unittest.mock

    with unittest.mock.patch.object(type(memory_backends.pubsub), "publish", dies_after_one):
        with pytest.raises(_Killed):
            deliver(on_upload, attrs)
    lease = services.settings.recovery.upload_claim_lease_seconds
    claimed_at = utcnow() - dt.timedelta(seconds=lease - 1)  # a killed process leaves its claim as it was
    memory_backends.documents.update(c.IDEMPOTENCY, batch_id, {"state": "ingesting", "claimed_at": claimed_at})
    started = time.monotonic()
    assert deliver(on_upload, attrs).status_code == 200
    assert time.monotonic() - started < lease  # waited for the lapse, not for minutes
    jobs = {d.id: d.data for d in memory_backends.documents.iterate(c.JOBS)}
    assert len(jobs) == 3 and {j["status"] for j in jobs.values()} == {"queued"}
    assert sorted({m.data.decode() for m in jobs_topic(memory_backends, services)}) == sorted(jobs)
    batch = memory_backends.documents.get(c.BATCHES, batch_id)
    assert batch is not None and batch["jobs_total"] == 3
    assert memory_backends.documents.get(c.IDEMPOTENCY, batch_id)["state"] == "done"
    quota = memory_backends.documents.get(c.QUOTAS, "alice")
    assert quota is not None and quota["active_jobs"] == 3


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (it is not an Exception)."""


def test_dead_letter_for_an_ended_or_unknown_job_is_harmless(alice, services, memory_backends):
    client = make_app("on_dead_letter").test_client()
    assert dead_letter(client, "job_unknown").status_code == 200
    api = make_app("api").test_client()
    job_id = api.post("/v1/jobs", json=GOOD, headers=alice.headers).get_json()["id"]
    api.post(f"/v1/jobs/{job_id}:cancel", headers=alice.headers)
    assert dead_letter(client, job_id).status_code == 200
    assert JobLedger(memory_backends.documents).require(job_id).status is JobStatus.CANCELLED
