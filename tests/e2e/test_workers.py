"""A worker killed in the middle of a job: another worker finishes the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import E2EStack, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(480)
def test_a_job_whose_worker_is_killed_mid_job_is_finished_by_a_second_worker(e2e: E2EStack, tmp_path: Path) -> None:
    user = e2e.create_user("crash")
    (first,) = e2e.stack.workers
    with e2e.client(user) as client:
        # Several seconds of work; the worker reports progress at least once a second.
        job = client.submit(prompt="interrupted", width=192, height=192, num_inference_steps=60, seed=5)
        wait_until(
            lambda: (seen := client.get(job.id)).status == "running" and seen.progress > 0,
            timeout=60,
            what="the job to be running with some progress",
            interval=0.1,
        )
        e2e.kill_worker(first.name)
        assert client.get(job.id).status == "running", "the job must still be mid-way when its worker dies"

        second = e2e.stack.add_worker(e2e.environ)
        assert second.name != first.name

        # The second worker requeues the job once the dead one's heartbeat is two lease
        # extensions old (30 s locally); the emulator alone keeps bouncing the original message
        # off the dead stream for minutes, until it is dead-lettered. Bounded generously.
        done = client.wait(job.id, timeout=240, poll_interval=0.5)
        assert done.status == "succeeded", done.error
        assert done.input["seed"] == 5
        (path,) = client.download(done, tmp_path)
        with Image.open(path) as image:
            assert image.size == (192, 192)
        usage = client.usage()
        assert (usage.jobs, usage.images) == (1, 1), "billed once although it ran twice"
