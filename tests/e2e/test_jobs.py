"""Jobs over HTTP and the `gpupipe` command against the running stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from client.errors import Conflict
from tests.e2e.conftest import E2EStack, wait_until

pytestmark = pytest.mark.e2e


def test_a_submitted_job_ends_as_an_image_in_the_bucket_that_can_be_downloaded(e2e: E2EStack, tmp_path: Path) -> None:
    user = e2e.create_user()
    with e2e.client(user) as client:
        job = client.submit(prompt="a lighthouse at dusk", width=64, height=64, num_inference_steps=10, seed=7)
        assert job.status == "queued"
        seen: list[str] = []
        done = client.wait(job.id, timeout=90, poll_interval=0.2, on_progress=lambda j: seen.append(j.status))
        assert done.status == "succeeded", done.error
        assert seen[-1] == "succeeded"
        assert done.input["seed"] == 7
        assert done.model_name == "tiny-sd" and done.model_version
        (output,) = done.outputs
        assert output.uri == f"gs://{e2e.stack.settings.names.outputs_bucket}/{user.user_id}/jobs/{job.id}/0.png"

        listed = e2e.gcloud("storage", "ls", "-l", output.uri)
        assert output.uri in listed

        (path,) = client.download(done, tmp_path)
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (64, 64)

        usage = client.usage()
        assert (usage.jobs, usage.images) == (1, 1)


def test_the_cli_submits_waits_and_downloads(e2e: E2EStack, tmp_path: Path) -> None:
    user = e2e.create_user("cli")
    key = {"GPUPIPE_API_KEY": user.api_key}
    done = e2e.gpupipe(
        "submit", "a red fox", "--width", "64", "--height", "64", "--steps", "8", "--out", str(tmp_path), env=key
    )
    assert done.returncode == 0, done.stderr
    (image,) = tmp_path.glob("*.png")
    listing = e2e.gpupipe("ls", "--json", env=key)
    assert listing.returncode == 0, listing.stderr
    (job,) = json.loads(listing.stdout)["jobs"]
    assert job["status"] == "succeeded"
    assert image.name.startswith(job["id"])

    unknown = e2e.gpupipe("status", "job_does_not_exist", env=key)
    assert unknown.returncode == 3
    wrong_key = e2e.gpupipe("ls", env={"GPUPIPE_API_KEY": "gp_not_a_key"})
    assert wrong_key.returncode == 4


def test_cancel_stops_a_running_job_and_a_finished_job_cannot_be_cancelled(e2e: E2EStack) -> None:
    user = e2e.create_user("cancel")
    with e2e.client(user) as client:
        # Long enough to be caught running: 256 px and 100 steps take many seconds here.
        job = client.submit(prompt="a long job", width=256, height=256, num_inference_steps=100)
        wait_until(lambda: client.get(job.id).status == "running", timeout=60, what="the job to start")

        cancelled = client.cancel(job.id)
        assert cancelled.status == "cancelled"
        with pytest.raises(Conflict):
            client.cancel(job.id)

        # The worker stops at the next step and moves on: a small job behind it finishes.
        after = client.submit(prompt="after the cancel", width=64, height=64, num_inference_steps=5)
        assert client.wait(after.id, timeout=60, poll_interval=0.2).status == "succeeded"
        final = client.get(job.id)
        assert final.status == "cancelled"
        assert final.outputs == []
