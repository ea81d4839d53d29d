"""The workers' pull keeps delivering after subscriber processes were SIGKILLed and replaced.

The Pub/Sub emulator never forgets a StreamingPull stream that closed and keeps dispatching
messages to it, so after a few killed subscribers almost nothing reaches the live ones (measured:
20 of 20 messages per 10 s before, 2 of 20 a minute after ten kills). The adapter's default unary
pull does not depend on streams: this test kills subscribers holding messages, then expects a live
subscriber to get every new message at once and every held one back after its ack deadline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.bootstrap import bootstrap
from core.ports import ReceivedMessage, SubscriptionSpec
from core.settings import Settings

pytestmark = pytest.mark.integration

_CHILD = """
import sys
from adapters.gcp.pubsub import PubSubSubscriber
project, host, subscription, record = sys.argv[1:5]
received = open(record, "a", buffering=1)
def hold(message):  # a worker mid-job: never settles before it is killed
    received.write(message.data.decode() + "\\n")
PubSubSubscriber(project, emulator_host=host, pull_mode="unary").subscribe(
    subscription, hold, max_messages=4, lease_extension_seconds=10
).wait()
"""


def test_a_live_subscriber_gets_every_message_after_six_killed_ones(
    emulator_settings: Settings, tmp_path: Path
) -> None:
    backends = bootstrap(emulator_settings)
    topic, subscription = "pull-after-kills", "pull-after-kills-sub"
    backends.messaging_admin.ensure_topic(topic)
    backends.messaging_admin.ensure_subscription(SubscriptionSpec(subscription, topic, ack_deadline_seconds=10))
    held: list[str] = []
    for cycle in range(6):
        record = tmp_path / f"child-{cycle}.txt"
        record.touch()
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                emulator_settings.project_id,
                str(emulator_settings.pubsub_emulator_host),
                subscription,
                str(record),
            ],
            cwd=Path(__file__).resolve().parents[3],
        )
        try:
            backends.publisher.publish(topic, f"old-{cycle}".encode())
            deadline = time.monotonic() + 30
            while not record.read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert record.read_text().strip(), f"subscriber {cycle} received nothing"
            held += record.read_text().split()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)

    got: dict[str, float] = {}
    lock = threading.Lock()

    def collect(message: ReceivedMessage) -> None:
        with lock:
            got.setdefault(message.data.decode(), time.monotonic())
        message.ack()

    live = backends.subscriber.subscribe(subscription, collect, max_messages=8)
    try:
        started = time.monotonic()
        fresh = [f"new-{n}" for n in range(20)]
        for data in fresh:
            backends.publisher.publish(topic, data.encode())
        wanted = set(fresh) | {f"old-{n}" for n in range(6)}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            with lock:
                if wanted <= set(got):
                    break
            time.sleep(0.2)
    finally:
        live.cancel()
        live.wait(timeout=15)
    assert set(fresh) <= set(got), f"new messages lost: {sorted(set(fresh) - set(got))}"
    # With StreamingPull, six of every seven new messages would first go to a dead stream and
    # wait out its 15 s deadline there; with unary pulls they arrive at once (bounds are loose for
    # a loaded 2-core machine).
    latencies = sorted(got[d] - started for d in fresh)
    assert latencies[len(latencies) // 2] < 5, f"new messages reached the live subscriber late: {latencies}"
    assert latencies[-1] < 30, f"a new message reached the live subscriber late: {latencies}"
    assert {f"old-{n}" for n in range(6)} <= set(got), "messages held by killed subscribers never came back"
    backends.messaging_admin.delete_subscription(subscription)
