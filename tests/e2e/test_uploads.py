"""The upload trigger: `gcloud storage cp` into the inbox -> Pub/Sub push -> on_upload -> jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.resources import Batch
from client.sdk import Client
from core.batches import batch_id_for
from tests.e2e.conftest import E2EStack, User, jsonl, unique

pytestmark = pytest.mark.e2e

SMALL = {"width": 64, "height": 64, "num_inference_steps": 5}


def _batch_jobs(client: Client, batch_id: str) -> list[str]:
    return sorted(job.id for job in client.iter_jobs(page_size=100) if job.batch_id == batch_id)


def _upload_and_wait(e2e: E2EStack, client: Client, user: User, source: Path, name: str) -> Batch:
    uri, generation = e2e.upload(source, user, name)
    # The contract: the batch id is derived from bucket, object and generation.
    batch_id = batch_id_for(e2e.inbox, uri.removeprefix(f"gs://{e2e.inbox}/"), generation)
    return client.wait_batch(batch_id, timeout=120, poll_interval=0.3)


def test_an_upload_with_good_and_bad_lines_runs_the_good_ones_and_lists_the_bad_ones(
    e2e: E2EStack, tmp_path: Path
) -> None:
    user = e2e.create_user("batch")
    source = jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "mountains at sunrise", "seed": 1, **SMALL},
            {"prompt": "a castle", **SMALL, "width": 100},  # line 2: width not a multiple of 8
            "",  # empty lines are skipped, but still counted
            {"prompt": "a river", "seed": 2, **SMALL},
            "{not json",  # line 5
            {"prompt": "a tree", "colour": "green", **SMALL},  # line 6: unknown field
        ],
    )
    with e2e.client(user) as client:
        batch = _upload_and_wait(e2e, client, user, source, "prompts.jsonl")
        assert batch.status == "completed"
        assert (batch.jobs.total, batch.jobs.succeeded, batch.invalid_lines) == (2, 2, 3)

        jobs = [client.get(job_id) for job_id in _batch_jobs(client, batch.id)]
        assert sorted(job.prompt for job in jobs) == ["a river", "mountains at sunrise"]
        for job in jobs:
            assert job.status == "succeeded"
            assert job.outputs[0].uri.startswith(f"gs://{e2e.stack.settings.names.outputs_bucket}/{user.user_id}/jobs/")
            assert client.download(job, tmp_path / "images")

        assert batch.errors_uri is not None
        errors = [json.loads(line) for line in e2e.gcloud("storage", "cat", batch.errors_uri).splitlines() if line]
        by_line = {entry["line"]: entry["error"] for entry in errors}
        assert sorted(by_line) == [2, 5, 6]
        assert [d["field"] for d in by_line[2]["details"]] == ["width"]
        assert by_line[5]["code"] == "invalid_argument"
        assert "colour" in json.dumps(by_line[6])

        assert batch.summary_uri is not None
        summary = json.loads(e2e.gcloud("storage", "cat", batch.summary_uri))
        assert summary["id"] == batch.id


def test_the_same_file_uploaded_twice_is_two_batches_and_a_replayed_event_creates_nothing(
    e2e: E2EStack, tmp_path: Path
) -> None:
    user = e2e.create_user("twice")
    source = jsonl(tmp_path / "same.jsonl", [{"prompt": f"line {n}", **SMALL} for n in range(1, 3)])
    with e2e.client(user) as client:
        first = _upload_and_wait(e2e, client, user, source, "same.jsonl")
        second = _upload_and_wait(e2e, client, user, source, "same.jsonl")
        assert first.id != second.id, "a new generation of the same object is a new batch"
        assert first.jobs.succeeded == second.jobs.succeeded == 2
        first_jobs, second_jobs = _batch_jobs(client, first.id), _batch_jobs(client, second.id)
        assert len(first_jobs) == len(second_jobs) == 2
        assert not set(first_jobs) & set(second_jobs)

        # Replay the live generation's notification, as a redelivery would, through the same topic.
        uri, generation = e2e.upload(source, user, "same.jsonl")
        replayed_batch = batch_id_for(e2e.inbox, f"{user.user_id}/same.jsonl", generation)
        client.wait_batch(replayed_batch, timeout=120, poll_interval=0.3)
        before = _batch_jobs(client, replayed_batch)
        attributes = {
            "bucketId": e2e.inbox,
            "objectId": f"{user.user_id}/same.jsonl",
            "objectGeneration": str(generation),
            "eventType": "OBJECT_FINALIZE",
            "payloadFormat": "JSON_API_V1",
        }
        resource = {"bucket": e2e.inbox, "name": attributes["objectId"], "generation": str(generation)}
        e2e.gcloud(
            "pubsub", "topics", "publish", e2e.uploads_topic,
            f"--message={json.dumps(resource)}",
            "--attribute=" + ",".join(f"{k}={v}" for k, v in attributes.items()),
        )  # fmt: skip
        # Pub/Sub pushes in order here: once a later upload's batch exists, the replay was handled too.
        marker = _upload_and_wait(
            e2e, client, user, jsonl(tmp_path / "marker.jsonl", [SMALL | {"prompt": "m"}]), unique("m") + ".jsonl"
        )
        assert marker.jobs.total == 1

        assert _batch_jobs(client, replayed_batch) == before
        again = client.batch(replayed_batch)
        assert (again.jobs.total, again.jobs.succeeded) == (2, 2)
        assert len(list(client.iter_jobs(page_size=100))) == 2 + 2 + 2 + 1
