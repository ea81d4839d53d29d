"""The `api` function through functions-framework's test client, over memory fakes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from adapters.memory import MemoryBackends, MemoryDocumentStore
from core import collection_names as c
from core.jobs import JobStatus
from core.ledger import JobLedger
from core.ports import BackendUnavailable
from functions import wiring
from functions.http import schemas
from tests.unit.functions.conftest import Caller, new_caller

JOB = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "num_inference_steps": 2}


def submit(client: Any, caller: Caller, body: Any = None, **headers: str) -> Any:
    return client.post("/v1/jobs", json=JOB if body is None else body, headers={**caller.headers, **headers})


def published(backends: MemoryBackends, services: wiring.Services) -> list[Any]:
    return backends.pubsub.pull(services.settings.names.jobs_subscription, max_messages=100, timeout=0.2)


# ---------------------------------------------------------------------- submit
def test_submit_returns_202_location_and_records_and_publishes_the_job(client, alice, services, memory_backends):
    response = submit(client, alice)
    assert response.status_code == 202
    job = schemas.Job.model_validate(response.get_json())
    assert response.headers["Location"] == f"/v1/jobs/{job.id}"
    assert job.status == "queued" and job.input["prompt"] == JOB["prompt"]
    assert isinstance(job.input["seed"], int), "a missing seed is chosen and recorded"
    stored = memory_backends.documents.get(c.JOBS, job.id)
    assert stored is not None and stored["user_id"] == "alice"
    [message] = published(memory_backends, services)
    assert message.data == job.id.encode()
    assert message.attributes["job_id"] == job.id and message.attributes["user_id"] == "alice"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "width": 100}, "width"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"width": 64}, "prompt"),
        ({"prompt": "x", "num_images": 9}, "num_images"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "webhook": "http://example.test/hook"}, "webhook"),
        ({"prompt": "x", "output_format": "gif"}, "output_format"),
        ({"prompt": "x", "model": "not-registered"}, "model"),
        ([1, 2], "(body)"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(client, alice, services, memory_backends, body, field):
    response = submit(client, alice, body)
    assert response.status_code == 400
    error = schemas.Error.model_validate(response.get_json()).error
    assert error.code == "invalid_argument"
    assert field in [d.field for d in error.details]
    assert published(memory_backends, services) == []


def test_body_that_is_not_json_gets_400(client, alice):
    response = client.post("/v1/jobs", data=b"{not json", headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "(body)"


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b"[" * 60000, "(body)", "nested too deeply"),
        (b'{"prompt": "x", "metadata": {"n": 1e400}}', "(body)", "out of range"),
        (b'{"prompt": "x", "guidance_scale": NaN}', "(body)", "NaN"),
        (b'{"prompt": "x", "guidance_scale": "7"}', "guidance_scale", "valid number"),
        (b'{"prompt": "x", "guidance_scale": true}', "guidance_scale", "valid number"),
    ],
)
def test_json_a_client_cannot_rely_on_is_rejected_not_corrected(client, alice, raw, field, says):
    response = client.post("/v1/jobs", data=raw, headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    details = response.get_json()["error"]["details"]
    assert any(d["field"] == field and says in d["message"] for d in details), details


@pytest.mark.parametrize("key", ["", "__main__", "____", "__x\n__", "k" * 129])
def test_metadata_keys_firestore_cannot_store_get_400_naming_metadata(client, alice, services, memory_backends, key):
    response = submit(client, alice, {**JOB, "metadata": {"ok": 1, key: "v"}})
    assert response.status_code == 400
    error = schemas.Error.model_validate(response.get_json()).error
    assert error.code == "invalid_argument"
    [detail] = error.details
    assert detail.field == "metadata"
    assert "__name__" in detail.message and json.dumps(key)[:20] in detail.message
    assert published(memory_backends, services) == []


def test_metadata_keys_firestore_can_store_are_kept(client, alice):
    metadata = {"___": 1, "__a": 2, "a__": 3, "a.b": 4, "`x`": 5, "k" * 128: 6, "str": 7}
    response = submit(client, alice, {**JOB, "metadata": metadata})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["metadata"] == metadata


def test_an_escaped_lone_surrogate_gets_400_not_500(client, alice):
    # Valid JSON syntax, but no character: Firestore (any UTF-8 encoder) cannot store it.
    raw = b'{"prompt": "x", "metadata": {"\\ud800": 1}}'
    response = client.post("/v1/jobs", data=raw, headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    [detail] = response.get_json()["error"]["details"]
    assert detail["field"] == "(body)" and "surrogate" in detail["message"]


def test_non_json_content_type_gets_415(client, alice):
    response = client.post("/v1/jobs", data="prompt=x", headers={**alice.headers, "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_oversized_body_gets_413(client, alice, services):
    limit = services.settings.request_limits.max_body_bytes
    body = json.dumps({"prompt": "x", "metadata": {"pad": "y" * limit}})
    response = client.post("/v1/jobs", data=body, headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


# ---------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    "authorization",
    [None, "Basic abc", "Bearer", "Bearer not-a-key", "Bearer gp_abcdefghijkl_" + "x" * 43],
)
def test_missing_malformed_or_unknown_keys_get_401(client, alice, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_and_disabled_user_get_401(client, services):
    caller = new_caller(services, "carol")
    assert client.get("/v1/usage", headers=caller.headers).status_code == 200
    [key] = services.accounts.list_keys("carol")
    services.accounts.revoke_key(key.id)
    assert client.get("/v1/usage", headers=caller.headers).status_code == 401
    other = services.accounts.create_key("carol").plain
    services.accounts.set_disabled("carol", True)
    assert client.get("/v1/usage", headers={"Authorization": f"Bearer {other}"}).status_code == 401


# ---------------------------------------------------------------------- idempotency
def test_same_idempotency_key_and_body_return_the_same_job_once(client, alice, services, memory_backends):
    first = submit(client, alice, **{"Idempotency-Key": "order-1"})
    second = submit(client, alice, **{"Idempotency-Key": "order-1"})
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.get_json()["input"]["seed"] == first.get_json()["input"]["seed"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(published(memory_backends, services)) == 1


def test_same_idempotency_key_with_another_body_gets_409(client, alice):
    assert submit(client, alice, **{"Idempotency-Key": "order-2"}).status_code == 202
    response = submit(client, alice, {**JOB, "prompt": "something else"}, **{"Idempotency-Key": "order-2"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


def test_idempotency_keys_are_per_user(client, alice, bob):
    a = submit(client, alice, **{"Idempotency-Key": "shared"}).get_json()["id"]
    b = submit(client, bob, **{"Idempotency-Key": "shared"}).get_json()["id"]
    assert a != b


# ---------------------------------------------------------------------- limits
def test_concurrency_limit_gets_429_with_retry_after_and_publishes_nothing(client, services, memory_backends):
    caller = new_caller(services, "dave", max_concurrent_jobs=1)
    assert submit(client, caller).status_code == 202
    assert len(published(memory_backends, services)) == 1
    response = submit(client, caller)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "resource_exhausted"
    assert int(response.headers["Retry-After"]) >= 1
    assert published(memory_backends, services) == []
    assert len(list(memory_backends.documents.iterate(c.JOBS))) == 1


def test_daily_image_quota_gets_429(client, services):
    caller = new_caller(services, "erin", daily_images=3)
    assert submit(client, caller, {**JOB, "num_images": 2}).status_code == 202
    response = submit(client, caller, {**JOB, "num_images": 2})
    assert response.status_code == 429
    assert "daily image quota" in response.get_json()["error"]["message"]


def test_rate_limit_gets_429_with_retry_after(client, services):
    caller = new_caller(services, "frank", requests_per_minute=2)
    assert [submit(client, caller).status_code for _ in range(3)] == [202, 202, 429]
    response = submit(client, caller)
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_cancelling_frees_the_concurrency_slot(client, services):
    caller = new_caller(services, "gina", max_concurrent_jobs=1)
    job_id = submit(client, caller).get_json()["id"]
    assert submit(client, caller).status_code == 429
    assert client.post(f"/v1/jobs/{job_id}:cancel", headers=caller.headers).status_code == 200
    assert submit(client, caller).status_code == 202


# ---------------------------------------------------------------------- reads and isolation
def test_get_list_and_cancel_are_scoped_to_the_caller(client, alice, bob):
    job_id = submit(client, alice).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=alice.headers).status_code == 200
    for response in (
        client.get(f"/v1/jobs/{job_id}", headers=bob.headers),
        client.post(f"/v1/jobs/{job_id}:cancel", headers=bob.headers),
        client.get("/v1/jobs/job_doesnotexist", headers=bob.headers),
    ):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    # Unknown and foreign ids read the same, so nothing can be inferred.
    foreign = client.get(f"/v1/jobs/{job_id}", headers=bob.headers).get_json()
    unknown = client.get("/v1/jobs/job_doesnotexist", headers=bob.headers).get_json()
    assert foreign["error"]["message"].replace(job_id, "ID") == unknown["error"]["message"].replace(
        "job_doesnotexist", "ID"
    )
    assert client.get("/v1/jobs", headers=bob.headers).get_json() == {"jobs": [], "next_page_token": None}
    assert client.get("/v1/usage", headers=bob.headers).get_json()["active_jobs"] == 0
    assert client.get(f"/v1/jobs/{job_id}", headers=alice.headers).get_json()["status"] == "queued"


def test_list_is_newest_first_paged_and_filtered(client, services):
    caller = new_caller(services, "hana", max_concurrent_jobs=50)
    ids = [submit(client, caller, {**JOB, "prompt": f"p{i}"}).get_json()["id"] for i in range(5)]
    client.post(f"/v1/jobs/{ids[1]}:cancel", headers=caller.headers)
    seen: list[str] = []
    token = None
    while True:
        query = {"page_size": 2, **({"page_token": token} if token else {})}
        page = schemas.JobList.model_validate(
            client.get("/v1/jobs", query_string=query, headers=caller.headers).get_json()
        )
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if token is None:
            break
    assert seen == list(reversed(ids))
    cancelled = client.get("/v1/jobs?status=cancelled", headers=caller.headers).get_json()["jobs"]
    assert [j["id"] for j in cancelled] == [ids[1]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("page_size=0", "page_size"),
        ("page_size=x", "page_size"),
        ("page_token=zz", "page_token"),
        # Present but empty is not absent: the document types both, and "" is neither.
        ("status=", "status"),
        ("page_size=", "page_size"),
        ("page_size=1_0", "page_size"),
        ("page_size=%20", "page_size"),
        ("page_size=%D9%A5", "page_size"),  # ARABIC-INDIC DIGIT FIVE: int() would take it
    ],
)
def test_bad_list_parameters_get_400(client, alice, query, field):
    response = client.get(f"/v1/jobs?{query}", headers=alice.headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == field


def test_page_token_of_another_user_is_rejected(client, services, bob):
    caller = new_caller(services, "ivan")
    for _ in range(3):
        submit(client, caller)
    token = client.get("/v1/jobs?page_size=1", headers=caller.headers).get_json()["next_page_token"]
    assert token
    assert client.get(f"/v1/jobs?page_token={token}", headers=bob.headers).status_code == 400


def test_cancel_of_a_terminal_job_gets_409(client, alice):
    job_id = submit(client, alice).get_json()["id"]
    first = client.post(f"/v1/jobs/{job_id}:cancel", headers=alice.headers)
    assert first.status_code == 200 and first.get_json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}:cancel", headers=alice.headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"


def test_usage_counts_the_callers_terminal_jobs(client, alice, bob, services, memory_backends):
    ledger = JobLedger(memory_backends.documents)
    job_id = submit(client, alice, {**JOB, "num_images": 2}).get_json()["id"]
    submit(client, bob)
    ledger.transition(job_id, JobStatus.RUNNING)

    def finish(job: Any) -> None:
        job.gpu_seconds = 1.5

    ledger.transition(job_id, JobStatus.SUCCEEDED, finish)
    usage = schemas.Usage.model_validate(client.get("/v1/usage", headers=alice.headers).get_json())
    assert usage.jobs == 1 and usage.gpu_seconds == 1.5 and usage.by_status["succeeded"] == 1
    assert usage.active_jobs == 0
    assert client.get("/v1/usage", headers=bob.headers).get_json()["jobs"] == 0


def test_batches_of_other_users_are_not_found(client, alice, bob, services, memory_backends):
    from core.batches import Batch, BatchStatus
    from core.timeutil import utcnow

    now = utcnow()
    batch = Batch("batch_x", "alice", "gs://in/alice/a.jsonl", BatchStatus.RUNNING, now, now, jobs_total=1)
    memory_backends.documents.create(c.BATCHES, batch.id, batch.to_document())
    mine = client.get("/v1/batches/batch_x", headers=alice.headers)
    assert mine.status_code == 200
    schemas.Batch.model_validate(mine.get_json())
    assert client.get("/v1/batches/batch_x", headers=bob.headers).status_code == 404


def test_models_lists_the_registry(client, alice, memory_backends):
    memory_backends.documents.set(c.MODELS, "tiny-sd", {"active_version": "v2", "versions": {"v1": {}, "v2": {}}})
    response = client.get("/v1/models", headers=alice.headers)
    models = schemas.ModelList.model_validate(response.get_json()).models
    assert {(m.name, m.version, m.default) for m in models} == {("tiny-sd", "v1", False), ("tiny-sd", "v2", True)}


# ---------------------------------------------------------------------- routing and documents
def test_unknown_path_is_404_and_wrong_method_is_405(client, alice):
    assert client.get("/v2/things", headers=alice.headers).status_code == 404
    response = client.delete("/v1/jobs", headers=alice.headers)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}


def test_openapi_document_and_offline_docs_page(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}:cancel",
        "/v1/batches/{id}",
        "/v1/usage",
        "/v1/models",
        "/healthz",
        "/openapi.json",
    }
    request_schema = document["components"]["schemas"]["JobRequest"]
    assert request_schema["additionalProperties"] is False and request_schema["required"] == ["prompt"]
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    # Nothing loaded from elsewhere (the webhook's pattern does spell "https://", as text).
    assert "<script" not in html and not re.search(r"""(?:src|href)\s*=\s*['"]?(?:https?:)?//""", html)
    assert "/v1/jobs/{id}:cancel" in html and "JobRequest" in html


def test_openapi_request_schema_is_the_validators_schema(client, services):
    from core.job_request import request_json_schema

    document = client.get("/openapi.json").get_json()
    assert document["components"]["schemas"]["JobRequest"] == request_json_schema(services.settings.request_limits)


# ---------------------------------------------------------------------- backend failures
class _DownDocuments(MemoryDocumentStore):
    """A document store whose backend cannot be reached (every call fails like a timeout)."""

    def __init__(self, healthy: MemoryDocumentStore, failing: Callable[[str], bool]) -> None:
        super().__init__()
        self._healthy = healthy
        self._failing = failing

    def _check(self, collection: str) -> None:
        if self._failing(collection):
            raise BackendUnavailable(f"{collection}: deadline exceeded")

    def get(self, collection: str, doc_id: str) -> Any:
        self._check(collection)
        return self._healthy.get(collection, doc_id)

    def query(self, collection: str, **kwargs: Any) -> Any:
        self._check(collection)
        return self._healthy.query(collection, **kwargs)

    def increment(self, collection: str, doc_id: str, deltas: Any) -> None:
        self._check(collection)
        self._healthy.increment(collection, doc_id, deltas)

    def transaction(self, fn: Any, *, max_attempts: int = 5) -> Any:
        self._check(c.JOBS)
        return self._healthy.transaction(fn, max_attempts=max_attempts)


def test_document_store_down_gives_503_with_retry_after(memory_settings, memory_backends, alice_on):
    from adapters.bootstrap import bootstrap
    from tests.unit.functions.conftest import make_app

    caller = alice_on(memory_backends)
    down = _DownDocuments(
        memory_backends.documents, lambda collection: collection != c.API_KEYS and collection != c.USERS
    )
    wiring.install(
        memory_settings,
        bootstrap(memory_settings, documents=down, blobs=memory_backends.blobs, publisher=memory_backends.pubsub),
    )
    try:
        client = make_app("api").test_client()
        for response in (
            client.post("/v1/jobs", json=JOB, headers=caller.headers),
            client.get("/v1/jobs", headers=caller.headers),
        ):
            assert response.status_code == 503
            assert response.get_json()["error"]["code"] == "unavailable"
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        wiring.reset()


@pytest.fixture
def alice_on(memory_settings):
    def make(backends: MemoryBackends) -> Caller:
        from core.accounts import Accounts

        accounts = Accounts(backends.documents, memory_settings)
        user = accounts.create_user("alice", user_id="alice")
        return Caller(user, accounts.create_key("alice").plain)

    return make


class _DownPublisher:
    def publish(self, topic: str, data: bytes, attributes: Any = None, *, timeout: float = 30.0) -> str:
        raise BackendUnavailable("pubsub: deadline exceeded")


def test_publish_failure_fails_the_job_and_gives_503(memory_settings, memory_backends, alice_on):
    from adapters.bootstrap import bootstrap
    from tests.unit.functions.conftest import make_app

    caller = alice_on(memory_backends)
    wiring.install(
        memory_settings,
        bootstrap(
            memory_settings,
            documents=memory_backends.documents,
            blobs=memory_backends.blobs,
            publisher=_DownPublisher(),
        ),
    )
    try:
        client = make_app("api").test_client()
        response = client.post("/v1/jobs", json=JOB, headers=caller.headers)
        assert response.status_code == 503 and "Retry-After" in response.headers
        [job] = client.get("/v1/jobs", headers=caller.headers).get_json()["jobs"]
        assert job["status"] == "failed" and job["error"]["code"] == "unavailable"
        usage = client.get("/v1/usage", headers=caller.headers).get_json()
        assert usage["active_jobs"] == 0 and usage["images"] == 0
    finally:
        wiring.reset()


def test_paths_the_framework_router_refuses_still_get_the_json_envelope(client: Any, alice: Any) -> None:
    response = client.get("/v1/jobs/%0Aabc", headers=alice.headers)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "not_found"


class _AdmissionFailsOnce(MemoryDocumentStore):
    """Every call goes to one memory store; the first transaction (the admission) times out."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    def transaction(self, fn: Any, *, max_attempts: int = 5) -> Any:
        if self.failures_left:
            self.failures_left -= 1
            raise BackendUnavailable("jobs: deadline exceeded")
        return super().transaction(fn, max_attempts=max_attempts)


def test_an_idempotent_retry_after_a_503_is_admitted_at_once(memory_settings, memory_backends, alice_on):
    from adapters.bootstrap import bootstrap
    from tests.unit.functions.conftest import make_app

    documents = _AdmissionFailsOnce()
    backends = MemoryBackends()
    backends.documents = documents
    caller = alice_on(backends)
    wiring.install(
        memory_settings,
        bootstrap(memory_settings, documents=documents, blobs=memory_backends.blobs, publisher=memory_backends.pubsub),
    )
    try:
        client = make_app("api").test_client()
        first = client.post("/v1/jobs", json=JOB, headers={**caller.headers, "Idempotency-Key": "retry-me"})
        assert first.status_code == 503
        assert list(documents.iterate(c.IDEMPOTENCY)) == []  # the key was released
        retry = client.post("/v1/jobs", json=JOB, headers={**caller.headers, "Idempotency-Key": "retry-me"})
        assert retry.status_code == 202
    finally:
        wiring.reset()


def test_cancelling_a_job_calls_its_webhook(client, alice, services):
    body = {**JOB, "webhook": "https://hooks.example.test/gpupipe"}
    job_id = submit(client, alice, body).get_json()["id"]
    assert client.post(f"/v1/jobs/{job_id}:cancel", headers=alice.headers).status_code == 200
    delivered = services.backends.webhooks.wait_for(1)
    assert [(url, p["event"], p["job"]["id"]) for url, p in delivered] == [
        ("https://hooks.example.test/gpupipe", "job.cancelled", job_id)
    ]
