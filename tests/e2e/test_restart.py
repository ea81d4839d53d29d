"""`make down` then `make up`: nothing in Firestore is lost, and unfinished jobs still finish.

What survives (README "What survives a restart"): Firestore (exported at stop, imported at
start), the outputs bucket (saved and written back), registered models (registered again);
Pub/Sub messages do not, so queued and running jobs are published again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import E2EStack

pytestmark = pytest.mark.e2e


def test_a_restart_keeps_users_jobs_usage_and_images_and_finishes_queued_jobs(e2e: E2EStack, tmp_path: Path) -> None:
    user = e2e.create_user("restart")
    with e2e.client(user) as client:
        done = client.wait(
            client.submit(prompt="before the restart", width=64, height=64, num_inference_steps=5).id, timeout=60
        )
        assert done.status == "succeeded"
        (image,) = client.download(done, tmp_path / "before")
        usage = client.usage()

        # No worker while this one is submitted: it is still queued when the stack stops.
        for worker in e2e.stack.workers:
            e2e.kill_worker(worker.name)
        queued = client.submit(prompt="queued across the restart", width=64, height=64, num_inference_steps=5)
        assert client.get(queued.id).status == "queued"
        api_url = e2e.api_url

    e2e.restart()

    assert e2e.api_url == api_url, "a restart reuses the ports, so a sourced local.env stays valid"
    assert e2e.stack.restored.firestore
    assert e2e.stack.restored.republished >= 1
    with e2e.client(user) as client:  # the same API key: users and keys survived
        again = client.get(done.id)
        # Everything but the fetchable URLs (signed on GCS, so they may differ per read).
        assert {k: v for k, v in again.raw.items() if k != "outputs"} == {
            k: v for k, v in done.raw.items() if k != "outputs"
        }
        assert [o.uri for o in again.outputs] == [o.uri for o in done.outputs]
        (image_again,) = client.download(again, tmp_path / "after")
        assert image_again.read_bytes() == image.read_bytes()

        finished = client.wait(queued.id, timeout=90, poll_interval=0.3)
        assert finished.status == "succeeded", finished.error
        after = client.usage()
        assert (after.jobs, after.images) == (usage.jobs + 1, usage.images + 1)
        assert {job.id for job in client.iter_jobs()} == {done.id, queued.id}
