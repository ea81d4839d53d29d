import datetime as dt

import pytest

from core.jobs import Job, JobError, JobOutput, JobStatus, can_transition, derived_id, output_object_name
from core.users import key_digest, key_matches, new_api_key, parse_key_id

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (JobStatus.QUEUED, JobStatus.RUNNING, True),
        (JobStatus.QUEUED, JobStatus.CANCELLED, True),
        (JobStatus.QUEUED, JobStatus.FAILED, True),
        (JobStatus.QUEUED, JobStatus.SUCCEEDED, False),
        (JobStatus.RUNNING, JobStatus.SUCCEEDED, True),
        (JobStatus.RUNNING, JobStatus.RUNNING, True),
        (JobStatus.RUNNING, JobStatus.QUEUED, False),
        (JobStatus.SUCCEEDED, JobStatus.RUNNING, False),
        (JobStatus.CANCELLED, JobStatus.SUCCEEDED, False),
        (JobStatus.FAILED, JobStatus.QUEUED, False),
    ],
)
def test_transitions_only_go_forward(current: JobStatus, target: JobStatus, allowed: bool) -> None:
    assert can_transition(current, target) is allowed


def test_derived_ids_are_deterministic_and_distinct() -> None:
    assert derived_id("job", "b", 1) == derived_id("job", "b", 1)
    assert derived_id("job", "b", 1) != derived_id("job", "b", 2)
    assert derived_id("job", "b", 1).startswith("job_")


def test_job_document_round_trip_and_public_shape() -> None:
    job = Job(
        id="job_1",
        user_id="alice",
        status=JobStatus.SUCCEEDED,
        input={"prompt": "x", "num_images": 1, "metadata": {"k": 1}},
        model_name="tiny-sd",
        model_version="v1",
        created_at=NOW,
        updated_at=NOW,
        completed_at=NOW,
        outputs=[JobOutput(0, "gs://o/alice/jobs/job_1/0.png", "image/png", 64, 64, 5, "o", "alice/jobs/job_1/0.png")],
        error=JobError("x", "y"),
    )
    again = Job.from_document("job_1", job.to_document())
    assert again == job
    public = job.to_public(lambda bucket, name: f"http://files/{bucket}/{name}")
    assert public["created_at"] == "2026-11-21T12:00:00.000Z"
    assert public["started_at"] is None
    assert public["model"] == {"name": "tiny-sd", "version": "v1"}
    assert public["outputs"][0]["url"] == "http://files/o/alice/jobs/job_1/0.png"
    assert public["metadata"] == {"k": 1}
    assert set(public) == {
        "id", "status", "created_at", "updated_at", "started_at", "completed_at", "input", "model",
        "progress", "outputs", "error", "metrics", "batch_id", "metadata",
    }  # fmt: skip


def test_output_names_follow_the_contract() -> None:
    assert output_object_name("alice", "job_1", 0, "jpeg") == "alice/jobs/job_1/0.jpeg"
    assert output_object_name("alice", "job_1", 3, "png") == "alice/jobs/job_1/3.png"


def test_image_seeds_stay_in_range() -> None:
    from core.jobs import image_seed

    assert image_seed(7, 2) == 9
    assert image_seed(2**32 - 1, 1) == 0


def test_api_keys_are_checked_by_digest_only() -> None:
    key_id, key = new_api_key()
    assert parse_key_id(key) == key_id
    digest = key_digest(key, "pepper")
    assert key not in digest
    assert key_matches(key, digest, "pepper")
    assert not key_matches(key, digest, "other-pepper")
    assert not key_matches(key + "x", digest, "pepper")
    assert parse_key_id("Bearer nonsense") is None
