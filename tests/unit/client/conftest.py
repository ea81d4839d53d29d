"""Fixtures: the real `api` function (functions/main.py through functions-framework) over
memory backends that the test holds too (see `support.Stack`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask import Flask

from adapters.bootstrap import bootstrap
from adapters.memory import MemoryBackends
from core.settings import Settings
from emulators import topology
from functions import wiring
from tests.unit.client.support import FakeTime, Stack, StorageTransport

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def api_app() -> Flask:
    return functions_framework.create_app(target="api", source=str(REPO / "functions" / "main.py"))


@pytest.fixture
def stack(api_app: Flask) -> Iterator[Stack]:
    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    memory = MemoryBackends()
    backends = bootstrap(
        settings,
        blobs=memory.blobs,
        documents=memory.documents,
        publisher=memory.pubsub,
        subscriber=memory.pubsub,
        messaging_admin=memory.pubsub,
    )
    topology.apply(topology.load(), settings.names, memory.blobs, memory.pubsub)
    wiring.install(settings, backends)
    try:
        yield Stack(settings=settings, memory=memory, app=api_app, storage=StorageTransport(memory))
    finally:
        wiring.reset()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
