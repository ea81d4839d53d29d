"""topology.yaml: loading and validation, and `apply` giving the same working topology on the
memory fakes and on the emulators; the fixtures' reset between tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml

from adapters.bootstrap import Backends, bootstrap
from adapters.memory import MemoryBackends
from core.settings import Names, Settings, resource_names
from emulators import topology
from emulators.suite import RunningSuite


@pytest.fixture(params=["memory", pytest.param("emulators", marks=pytest.mark.integration)])
def applied(request: pytest.FixtureRequest) -> tuple[Settings, Backends]:
    """Settings and backends with the topology applied, on each backend."""
    if request.param == "memory":
        settings: Settings = request.getfixturevalue("memory_settings")
        fakes: MemoryBackends = request.getfixturevalue("memory_backends")
        return settings, bootstrap(
            settings,
            blobs=fakes.blobs,
            documents=fakes.documents,
            publisher=fakes.pubsub,
            subscriber=fakes.pubsub,
            messaging_admin=fakes.pubsub,
        )
    settings = request.getfixturevalue("emulator_settings")
    return settings, bootstrap(settings)


def write_topology(tmp_path: Path, mutate: dict[str, object]) -> Path:
    raw = yaml.safe_load(topology.DEFAULT_PATH.read_text(encoding="utf-8"))
    for dotted, value in mutate.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# ------------------------------------------------------------------ loading
def test_every_resource_maps_to_a_settings_name() -> None:
    topo = topology.load()
    names = Names(**resource_names("acme"))

    specs = {s.name: s for s in topology.subscription_specs(topo, names)}

    assert set(specs) == {
        "acme-jobs-worker",
        "acme-jobs-dead-handler",
        "acme-uploads-handler",
        "acme-undeliverable-hold",
    }
    worker = specs["acme-jobs-worker"]
    assert (worker.topic, worker.dead_letter_topic, worker.max_delivery_attempts) == ("acme-jobs", "acme-jobs-dead", 5)
    assert worker.ack_deadline_seconds == 60
    assert (worker.retry_minimum_backoff_seconds, worker.retry_maximum_backoff_seconds) == (5, 300)
    assert specs["acme-undeliverable-hold"].dead_letter_topic is None
    assert topology.upload_notification(topo, names) == ("acme-inbox", "acme-uploads", ["OBJECT_FINALIZE"])


def test_overridden_names_are_used(memory_settings: Settings) -> None:
    names = memory_settings.names.model_copy(update={"jobs_subscription": "custom-worker-sub"})

    specs = topology.subscription_specs(topology.load(), names)

    assert "custom-worker-sub" in {s.name for s in specs}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ({"subscriptions.jobs-worker.topic": "nope"}, "subscription 'jobs-worker': unknown topic 'nope'"),
        ({"subscriptions.jobs-worker.dead_letter_topic": "gone"}, "unknown dead_letter_topic 'gone'"),
        ({"notifications.inbox-uploads.bucket": "attic"}, "unknown bucket 'attic'"),
        ({"subscriptions.jobs-worker.ack_deadline_seconds": 5}, "subscriptions.jobs-worker.ack_deadline_seconds"),
        (
            {"topics.audit": {"purpose": "not in settings"}},
            "Names (resource_names) for topic 'audit'",
        ),
        ({"buckets.inbox.colour": "red"}, "buckets.inbox.colour"),
    ],
)
def test_load_names_what_is_wrong(tmp_path: Path, mutate: dict[str, object], message: str) -> None:
    with pytest.raises(topology.TopologyError) as caught:
        topology.load(write_topology(tmp_path, mutate))

    assert message in str(caught.value)


# ------------------------------------------------------------------ apply, on both backends
def test_every_topic_delivers_to_its_subscription(applied: tuple[Settings, Backends]) -> None:
    settings, backends = applied
    topo = topology.load()
    for spec in topology.subscription_specs(topo, settings.names):
        backends.publisher.publish(spec.topic, spec.name.encode(), {"to": spec.name})

    for spec in topology.subscription_specs(topo, settings.names):
        messages = backends.subscriber.pull(spec.name, max_messages=10, timeout=10)
        assert [(m.data, dict(m.attributes)) for m in messages] == [(spec.name.encode(), {"to": spec.name})]
        messages[0].ack()


def test_every_bucket_takes_objects(applied: tuple[Settings, Backends]) -> None:
    settings, backends = applied
    for logical in topology.load().buckets:
        bucket = topology.concrete_name(settings.names, "bucket", logical)
        backends.blobs.create(bucket, "probe.txt", logical.encode(), content_type="text/plain")
        assert backends.blobs.read(bucket, "probe.txt") == logical.encode()


def test_apply_twice_changes_nothing(applied: tuple[Settings, Backends]) -> None:
    settings, backends = applied
    backends.publisher.publish(settings.names.jobs_topic, b"kept")

    topology.apply(topology.load(), settings.names, backends.blobs, backends.messaging_admin)

    messages = backends.subscriber.pull(settings.names.jobs_subscription, timeout=10)
    assert [m.data for m in messages] == [b"kept"]


def test_jobs_dead_letter_after_max_attempts_on_the_fakes(
    memory_settings: Settings, memory_backends: MemoryBackends
) -> None:
    names, pubsub = memory_settings.names, memory_backends.pubsub
    attempts = topology.load().subscriptions["jobs-worker"].max_delivery_attempts
    assert attempts is not None
    pubsub.publish(names.jobs_topic, b"poison")

    deliveries = 0
    deadline = time.monotonic() + 10
    while deliveries < attempts and time.monotonic() < deadline:
        for message in pubsub.pull(names.jobs_subscription, timeout=1):
            deliveries += 1
            message.nack()

    dead = pubsub.pull(names.jobs_dead_subscription, timeout=5)
    assert deliveries == attempts
    assert [m.data for m in dead] == [b"poison"]


@pytest.mark.integration
def test_emulator_subscriptions_carry_the_topology_policies(emulator_settings: Settings) -> None:
    host, project = emulator_settings.pubsub_emulator_host, emulator_settings.project_id
    for spec in topology.subscription_specs(topology.load(), emulator_settings.names):
        found = requests.get(f"http://{host}/v1/projects/{project}/subscriptions/{spec.name}", timeout=10).json()
        assert found["topic"] == f"projects/{project}/topics/{spec.topic}"
        assert found["ackDeadlineSeconds"] == spec.ack_deadline_seconds
        assert found["retryPolicy"] == {
            "minimumBackoff": f"{spec.retry_minimum_backoff_seconds:g}s",
            "maximumBackoff": f"{spec.retry_maximum_backoff_seconds:g}s",
        }
        if spec.dead_letter_topic is None:
            assert "deadLetterPolicy" not in found
        else:
            assert found["deadLetterPolicy"] == {
                "deadLetterTopic": f"projects/{project}/topics/{spec.dead_letter_topic}",
                "maxDeliveryAttempts": spec.max_delivery_attempts,
            }


@pytest.mark.integration
def test_models_bucket_is_versioned_on_the_emulator(emulator_settings: Settings) -> None:
    base = f"{emulator_settings.storage_emulator_host}/storage/v1/b"
    names = emulator_settings.names
    assert requests.get(f"{base}/{names.models_bucket}", timeout=10).json()["versioning"] == {"enabled": True}
    assert requests.get(f"{base}/{names.inbox_bucket}", timeout=10).json()["versioning"] == {"enabled": False}


# ------------------------------------------------------------------ reset between tests
def test_reset_empties_every_emulator(emulator_suite: RunningSuite, emulator_settings: Settings) -> None:
    backends = bootstrap(emulator_settings)
    names = emulator_settings.names
    backends.blobs.write(names.models_bucket, "tiny/1/model.bin", b"v1")
    backends.blobs.write(names.models_bucket, "tiny/1/model.bin", b"v2")  # a noncurrent generation too
    backends.blobs.write(names.inbox_bucket, "u/prompts.jsonl", b"{}")
    backends.documents.set("jobs", "job-1", {"status": "queued"})
    backends.publisher.publish(names.jobs_topic, b"left over")

    emulator_suite.reset()

    for bucket in (names.inbox_bucket, names.outputs_bucket, names.models_bucket):
        assert backends.blobs.list(bucket) == []
    versions = requests.get(
        f"{emulator_settings.storage_emulator_host}/storage/v1/b/{names.models_bucket}/o",
        params={"versions": "true"},
        timeout=10,
    ).json()
    assert versions.get("items", []) == []
    assert backends.documents.get("jobs", "job-1") is None
    assert backends.subscriber.pull(names.jobs_subscription, timeout=2) == []
    backends.publisher.publish(names.jobs_topic, b"after reset")
    assert [m.data for m in backends.subscriber.pull(names.jobs_subscription, timeout=10)] == [b"after reset"]


@pytest.mark.integration
def test_uploads_still_notify_after_a_reset(emulator_suite: RunningSuite, emulator_settings: Settings) -> None:
    """fake-gcs-server keeps publishing to the uploads topic that reset deleted and re-created."""
    backends = bootstrap(emulator_settings)
    names = emulator_settings.names

    backends.blobs.create(names.inbox_bucket, "u1/p.jsonl", b'{"prompt": "x"}\n')

    messages = backends.subscriber.pull(names.uploads_subscription, timeout=10)
    assert [(m.attributes["eventType"], m.attributes["objectId"]) for m in messages] == [
        ("OBJECT_FINALIZE", "u1/p.jsonl")
    ]
