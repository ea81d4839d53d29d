"""The SDK against the real `api` function (in-process) over memory backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from client.errors import (
    Conflict,
    InvalidArgument,
    NetworkError,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from client.resources import Batch, Job
from client.sdk import Client
from core.batches import batch_id_for
from core.uploads import FINALIZE, StorageNotification, UploadTrigger
from tests.unit.client.support import API_URL, FakeTime, Stack

SMALL: dict[str, Any] = {"width": 64, "height": 64, "num_inference_steps": 2}


def make_client(stack: Stack, api_key: str, fake_time: FakeTime | None = None) -> Client:
    """A client of the in-process API; with `fake_time`, its waits run on a fake clock."""
    time = fake_time or FakeTime()
    return Client(
        API_URL,
        api_key,
        transport=stack.transport(),
        storage_transport=stack.storage,
        sleep=time.sleep,
        clock=time.clock,
    )


@pytest.fixture
def alice(stack: Stack) -> tuple[str, str]:
    return stack.new_user("alice")


@pytest.fixture
def client(stack: Stack, alice: tuple[str, str], fake_time: FakeTime) -> Client:
    return make_client(stack, alice[1], fake_time)


# --------------------------------------------------------------------------- submit and read
def test_submit_returns_a_typed_queued_job_with_the_normalized_request(client: Client) -> None:
    job = client.submit(prompt="a red fox", **SMALL)

    assert isinstance(job, Job)
    assert job.id.startswith("job_")
    assert job.status == "queued" and not job.terminal
    assert job.progress == 0.0
    assert job.prompt == "a red fox"
    assert job.input["width"] == 64 and job.input["num_inference_steps"] == 2
    assert isinstance(job.input["seed"], int), "the API chooses and records a seed"
    assert job.created_at is not None and job.created_at.tzinfo is not None
    assert job.outputs == [] and job.error is None
    assert job.raw["id"] == job.id


def test_submit_takes_a_dict_and_keywords_override_it(client: Client) -> None:
    job = client.submit({"prompt": "from a dict", "width": 128, "height": 64}, width=64, seed=7, metadata={"k": "v"})

    assert job.input["width"] == 64
    assert job.input["seed"] == 7
    assert job.metadata == {"k": "v"}


def test_get_returns_the_same_job(client: Client) -> None:
    submitted = client.submit(prompt="lighthouse", **SMALL)

    fetched = client.get(submitted.id)

    assert fetched.id == submitted.id
    assert fetched.input == submitted.input
    assert fetched.status == "queued"


def test_unknown_and_foreign_jobs_are_both_not_found(stack: Stack, client: Client) -> None:
    _, bob_key = stack.new_user("bob")
    bobs_job = make_client(stack, bob_key).submit(prompt="bob's", **SMALL)

    for job_id in ("job_does_not_exist", bobs_job.id):
        with pytest.raises(NotFound) as caught:
            client.get(job_id)
        assert caught.value.status == 404
        assert caught.value.code == "not_found"


def test_invalid_request_raises_invalid_argument_naming_each_field(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.submit(prompt="x", width=65, colour="blue")

    error = caught.value
    assert error.status == 400 and error.code == "invalid_argument"
    fields = {d.field for d in error.details}
    assert {"width", "colour"} <= fields
    assert "width" in str(error) and "colour" in str(error), "the message carries the field details"


def test_a_wrong_api_key_is_unauthenticated(stack: Stack) -> None:
    for key in ("gp_aaaaaaaaaaaa_" + "x" * 40, "not-a-key"):
        with pytest.raises(Unauthenticated) as caught:
            make_client(stack, key).list()
        assert caught.value.status == 401


# --------------------------------------------------------------------------- idempotency and cancel
def test_idempotency_key_returns_the_same_job_and_refuses_another_body(client: Client) -> None:
    first = client.submit(prompt="once", idempotency_key="order-17", **SMALL)
    again = client.submit(prompt="once", idempotency_key="order-17", **SMALL)

    assert again.id == first.id
    with pytest.raises(Conflict) as caught:
        client.submit(prompt="something else", idempotency_key="order-17", **SMALL)
    assert caught.value.status == 409


def test_cancel_a_queued_job_then_cancelling_again_conflicts(client: Client) -> None:
    job = client.submit(prompt="never mind", **SMALL)

    cancelled = client.cancel(job.id)

    assert cancelled.status == "cancelled" and cancelled.terminal
    assert client.get(job.id).status == "cancelled"
    with pytest.raises(Conflict) as caught:
        client.cancel(job.id)
    assert caught.value.status == 409 and "cancelled" in caught.value.message


# --------------------------------------------------------------------------- listing
def test_list_pages_newest_first_and_iter_jobs_walks_every_page(stack: Stack, client: Client) -> None:
    ids = [client.submit(prompt=f"p{i}", **SMALL).id for i in range(5)]
    _, bob_key = stack.new_user("bob")
    make_client(stack, bob_key).submit(prompt="not alice's", **SMALL)

    first = client.list(page_size=2)
    assert [j.id for j in first.jobs] == ids[::-1][:2]
    assert first.next_page_token
    second = client.list(page_size=2, page_token=first.next_page_token)
    assert [j.id for j in second.jobs] == ids[::-1][2:4]

    assert [j.id for j in client.iter_jobs(page_size=2)] == ids[::-1]


def test_list_filters_by_status(client: Client) -> None:
    kept = client.submit(prompt="stays", **SMALL)
    gone = client.submit(prompt="goes", **SMALL)
    client.cancel(gone.id)

    assert [j.id for j in client.iter_jobs(status="cancelled")] == [gone.id]
    assert [j.id for j in client.iter_jobs(status="queued")] == [kept.id]
    with pytest.raises(InvalidArgument) as caught:
        client.list(status="sleeping")
    assert [d.field for d in caught.value.details] == ["status"]


# --------------------------------------------------------------------------- quotas
def test_concurrency_limit_is_rate_limited_with_retry_after(stack: Stack) -> None:
    _, key = stack.new_user("carol", max_concurrent_jobs=1)
    client = make_client(stack, key)
    client.submit(prompt="first", **SMALL)

    with pytest.raises(RateLimited) as caught:
        client.submit(prompt="second", **SMALL)

    assert caught.value.status == 429 and caught.value.code == "resource_exhausted"
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


def test_requests_per_minute_limit_is_rate_limited(stack: Stack) -> None:
    _, key = stack.new_user("dave", requests_per_minute=1)
    client = make_client(stack, key)
    client.submit(prompt="first", **SMALL)

    with pytest.raises(RateLimited) as caught:
        client.submit(prompt="second", **SMALL)

    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 60


def test_usage_counts_finished_jobs(stack: Stack, client: Client) -> None:
    job = client.submit(prompt="billable", num_images=2, **SMALL)
    stack.succeed(job.id)

    usage = client.usage()

    assert usage.jobs == 1
    assert usage.images == 2
    assert usage.gpu_seconds == pytest.approx(0.25)
    assert "by_status" in usage.raw


def test_models_lists_registered_models(stack: Stack, client: Client) -> None:
    stack.memory.documents.set(
        "models",
        "tiny-sd",
        {"name": "tiny-sd", "active_version": "v2", "history": ["v1"], "versions": {"v1": {}, "v2": {}}},
    )

    models = client.models()

    assert [(m.name, m.version, m.default) for m in models] == [("tiny-sd", "v1", False), ("tiny-sd", "v2", True)]


# --------------------------------------------------------------------------- waiting
def test_wait_reports_progress_and_returns_the_finished_job(stack: Stack, client: Client, fake_time: FakeTime) -> None:
    job = client.submit(prompt="slowly", **SMALL)
    # While the SDK sleeps between polls, the "worker" moves the job along.
    fake_time.on_sleep = [
        lambda: None,
        lambda: stack.start(job.id, progress=0.5),
        lambda: None,
        lambda: stack.succeed(job.id),
    ]
    seen: list[tuple[str, float]] = []

    done = client.wait(job.id, timeout=60, poll_interval=1.0, on_progress=lambda j: seen.append((j.status, j.progress)))

    assert done.status == "succeeded" and done.succeeded
    assert seen == [("queued", 0.0), ("running", 0.5), ("succeeded", 1.0)], "one callback per change, none for repeats"
    assert len(done.outputs) == 1 and done.outputs[0].url


def test_wait_backs_off_while_nothing_changes_and_times_out(client: Client, fake_time: FakeTime) -> None:
    job = client.submit(prompt="stuck", **SMALL)

    with pytest.raises(WaitTimeout) as caught:
        client.wait(job.id, timeout=30, poll_interval=1.0, max_poll_interval=4.0)

    assert isinstance(caught.value.last, Job) and caught.value.last.status == "queued"
    assert sum(fake_time.sleeps) == pytest.approx(30.0), "waits exactly up to the deadline, no longer"
    assert fake_time.sleeps[0] == 1.0
    assert fake_time.sleeps[1] > fake_time.sleeps[0], "backs off while nothing changes"
    assert max(fake_time.sleeps) <= 4.0
    assert len(fake_time.sleeps) < 30, "fewer polls than a fixed one-second interval"


def test_wait_for_an_unknown_job_fails_at_once(client: Client, fake_time: FakeTime) -> None:
    with pytest.raises(NotFound):
        client.wait("job_nope", timeout=30)
    assert fake_time.sleeps == []


class Throttle(httpx.BaseTransport):
    """Answers the first `count` requests with `status` and a Retry-After, then passes every
    request to the real app. Stands for a proxy or a busy backend the app cannot be made to be."""

    def __init__(self, inner: httpx.BaseTransport, status: int, retry_after: str, count: int) -> None:
        self._inner = inner
        self._status = status
        self._retry_after = retry_after
        self.remaining = count
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.remaining > 0:
            self.remaining -= 1
            code = "resource_exhausted" if self._status == 429 else "unavailable"
            return httpx.Response(
                self._status,
                json={"error": {"code": code, "message": "slow down", "details": []}},
                headers={"Retry-After": self._retry_after},
            )
        return self._inner.handle_request(request)


def test_wait_honours_retry_after_on_429(stack: Stack, alice: tuple[str, str], fake_time: FakeTime) -> None:
    job = make_client(stack, alice[1]).submit(prompt="busy", **SMALL)
    stack.succeed(job.id)
    throttle = Throttle(stack.transport(), 429, "7", count=2)
    client = Client(API_URL, alice[1], transport=throttle, sleep=fake_time.sleep, clock=fake_time.clock)

    done = client.wait(job.id, timeout=60, poll_interval=1.0)

    assert done.status == "succeeded"
    assert fake_time.sleeps == [7.0, 7.0]


def test_reads_retry_503_with_retry_after_but_submits_do_not(
    stack: Stack, alice: tuple[str, str], fake_time: FakeTime
) -> None:
    throttle = Throttle(stack.transport(), 503, "3", count=1)
    client = Client(API_URL, alice[1], transport=throttle, sleep=fake_time.sleep, clock=fake_time.clock)

    assert client.list().jobs == []
    assert fake_time.sleeps == [3.0]

    throttle.remaining = 1
    with pytest.raises(Unavailable) as caught:
        client.submit(prompt="not retried", **SMALL)
    assert caught.value.retry_after == 3.0
    assert throttle.calls == 3


def test_an_unreachable_api_is_a_network_error(fake_time: FakeTime) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = Client(
        "http://127.0.0.1:9",
        "gp_x",
        transport=httpx.MockTransport(refuse),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        max_retries=2,
    )

    with pytest.raises(NetworkError, match="cannot reach the gpupipe API at http://127.0.0.1:9"):
        client.get("job_1")
    assert len(fake_time.sleeps) == 2, "a read is retried max_retries times"


# --------------------------------------------------------------------------- downloads
def test_download_writes_each_output_and_never_sends_the_key_to_storage(
    stack: Stack, client: Client, tmp_path: Path
) -> None:
    job = client.submit(prompt="two images", num_images=2, **SMALL)
    images = stack.succeed(job.id)

    paths = client.download(job.id, tmp_path / "out")

    assert [p.name for p in paths] == [f"{job.id}-0.png", f"{job.id}-1.png"]
    assert [p.read_bytes() for p in paths] == images
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    assert len(stack.storage.requests) == 2
    assert all("authorization" not in r.headers for r in stack.storage.requests)
    assert not list((tmp_path / "out").glob(".*.part")), "no partial files left behind"


def test_download_of_an_unfinished_job_writes_nothing(client: Client, tmp_path: Path) -> None:
    job = client.submit(prompt="not yet", **SMALL)

    assert client.download(job, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_download_of_a_missing_object_is_not_found(stack: Stack, client: Client, tmp_path: Path) -> None:
    job = client.submit(prompt="lost", **SMALL)
    stack.succeed(job.id)
    done = client.get(job.id)
    stack.memory.blobs.delete(stack.settings.names.outputs_bucket, done.outputs[0].uri.split("/", 3)[3])

    with pytest.raises(NotFound, match="cannot fetch output 0"):
        client.download(done, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- batches
def test_upload_batch_writes_the_inbox_object_and_predicts_the_batch_id(
    stack: Stack, client: Client, alice: tuple[str, str], tmp_path: Path, fake_time: FakeTime
) -> None:
    user_id = alice[0]
    source = tmp_path / "prompts.jsonl"
    source.write_text('{"prompt": "a", "width": 64, "height": 64}\n{"prompt": "b", "width": 63}\n')
    inbox = stack.settings.names.inbox_bucket

    batch_id = client.upload_batch(source, user_id, settings=stack.settings, blobs=stack.memory.blobs)

    info = stack.memory.blobs.stat(inbox, f"{user_id}/prompts.jsonl")
    assert info is not None
    assert stack.memory.blobs.read(inbox, info.name) == source.read_bytes()
    assert batch_id == batch_id_for(inbox, info.name, info.generation)

    # The upload trigger (real core code, as the on_upload function runs it) makes that batch.
    trigger = UploadTrigger(stack.memory.documents, stack.memory.blobs, stack.memory.pubsub, stack.settings)
    outcome = trigger.handle(StorageNotification(inbox, info.name, str(info.generation), FINALIZE))
    assert outcome.batch_id == batch_id

    batch = client.batch(batch_id)
    assert isinstance(batch, Batch)
    assert (batch.lines, batch.invalid_lines, batch.jobs.total, batch.status) == (2, 1, 1, "running")

    (job,) = client.iter_jobs()
    fake_time.on_sleep = [lambda: stack.succeed(job.id)]
    seen: list[int] = []
    done = client.wait_batch(batch_id, timeout=60, on_progress=lambda b: seen.append(b.jobs.pending))
    assert done.status == "completed" and done.jobs.succeeded == 1
    assert seen == [1, 0]


def test_upload_batch_refuses_a_bad_user_id_or_a_missing_file(client: Client, stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "p.jsonl"
    source.write_text("{}\n")
    with pytest.raises(ValueError, match="user id"):
        client.upload_batch(source, "Not/A/User", settings=stack.settings, blobs=stack.memory.blobs)
    with pytest.raises(FileNotFoundError):
        client.upload_batch(tmp_path / "absent.jsonl", "alice", settings=stack.settings, blobs=stack.memory.blobs)


def test_wait_batch_waits_for_a_batch_that_does_not_exist_yet(client: Client, fake_time: FakeTime) -> None:
    with pytest.raises(WaitTimeout, match="never found"):
        client.wait_batch("batch_not_yet", timeout=10, poll_interval=2)
    assert sum(fake_time.sleeps) == pytest.approx(10)
