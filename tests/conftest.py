"""Fixtures shared by every test tier.

- `emulator_suite` (session): one local emulator suite (Pub/Sub, Firestore, fake-gcs-server) on
  free ports with its own state directory, started the first time a test asks for it and
  stopped at the end of the session (also after failures and Ctrl-C).
- `emulator_settings` (function): empties the suite and re-creates the topology, then returns
  `Settings` (backend "gcp") pointed at it. Tests that use either fixture are marked
  `integration` automatically, so `pytest -m "not integration"` needs no Java.
- `memory_backends` (function): fresh in-memory fakes with the topology applied.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from adapters.memory import MemoryBackends
from core.settings import Settings
from emulators import suite, topology
from emulators.suite import RunningSuite

_SUITE_FIXTURES = frozenset({"emulator_suite", "emulator_settings"})
_STARTUP_SECONDS = pytest.StashKey[float]()
_RESETS = pytest.StashKey[list[float]]()

# The google client libraries fall back to these when a client is built without an explicit
# endpoint; pointing them at the session's suite keeps a shell's sourced .gpupipe/local.env
# (another suite) out of the tests.
_CLIENT_LIBRARY_VARIABLES = (
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SUITE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def emulator_suite(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[RunningSuite]:
    """The session's emulator suite; prefer `emulator_settings`, which also empties it."""
    # Free ports and default names: deliberately not os.environ, which may describe another suite.
    settings = Settings.from_env({"GPUPIPE_ENV": "local"})
    began = time.monotonic()
    running = suite.start(settings, environ=os.environ, state_dir=tmp_path_factory.mktemp("emulator-suite"))
    pytestconfig.stash[_STARTUP_SECONDS] = time.monotonic() - began
    try:
        with pytest.MonkeyPatch.context() as patch:
            env = running.env()
            for name in _CLIENT_LIBRARY_VARIABLES:
                patch.setenv(name, env[name])
            yield running
    finally:
        running.stop()


@pytest.fixture
def emulator_settings(emulator_suite: RunningSuite, pytestconfig: pytest.Config) -> Settings:
    """Settings (backend "gcp") for the emulator suite, every topology resource freshly created and empty."""
    began = time.monotonic()
    emulator_suite.reset()
    pytestconfig.stash.setdefault(_RESETS, []).append(time.monotonic() - began)
    return emulator_suite.settings


@pytest.fixture
def memory_settings() -> Settings:
    return Settings.from_env({"GPUPIPE_ENV": "test"})


@pytest.fixture
def memory_backends(memory_settings: Settings) -> MemoryBackends:
    """Fresh memory fakes holding the same topology (buckets, topics, subscriptions) as the emulators."""
    backends = MemoryBackends()
    topology.apply(topology.load(), memory_settings.names, backends.blobs, backends.pubsub)
    return backends


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    startup = config.stash.get(_STARTUP_SECONDS, None)
    if startup is None:
        return
    resets = config.stash.get(_RESETS, [])
    line = f"emulator suite: started in {startup:.1f} s"
    if resets:
        line += f"; {len(resets)} resets, mean {sum(resets) / len(resets) * 1000:.0f} ms"
    terminalreporter.write_line(line)
