"""Fixtures for the worker's integration tests: the tiny model registered in the emulated
models bucket, and worker processes started the way a deployment starts them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.bootstrap import Backends, bootstrap
from core.model_registry import ModelRegistry, ModelVersion
from core.ports import SubscriptionSpec
from core.settings import Settings
from emulators import topology
from emulators.suite import RunningSuite
from tests.unit.worker.model_fixtures import tiny_model_dir, tiny_runner

__all__ = ["tiny_model_dir", "tiny_runner"]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def backends(emulator_settings: Settings) -> Backends:
    return bootstrap(emulator_settings)


@pytest.fixture
def tiny_model_version(emulator_settings: Settings, backends: Backends, tiny_model_dir: Path) -> ModelVersion:
    registry = ModelRegistry(backends.documents, backends.blobs, emulator_settings.names.models_bucket)
    return registry.register("tiny-sd", tiny_model_dir, promote=True, exist_ok=True)


def jobs_subscription(settings: Settings, **changes: object) -> SubscriptionSpec:
    """The jobs subscription as topology.yaml describes it, with `changes`."""
    specs = topology.subscription_specs(topology.load(), settings.names)
    spec = next(s for s in specs if s.name == settings.names.jobs_subscription)
    return SubscriptionSpec(**{**spec.__dict__, **changes})  # type: ignore[arg-type]


def recreate_jobs_subscription(settings: Settings, backends: Backends, **changes: object) -> None:
    backends.messaging_admin.delete_subscription(settings.names.jobs_subscription)
    backends.messaging_admin.ensure_subscription(jobs_subscription(settings, **changes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WorkerProcess = Callable[..., tuple[subprocess.Popen[bytes], int, Path]]


@pytest.fixture
def worker_process(emulator_suite: RunningSuite, tmp_path: Path) -> Iterator[WorkerProcess]:
    """Start `python -m gpu_worker` against the suite; returns (process, health port, log file).
    Every process still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        log_path = tmp_path / f"worker-{len(started)}.log"
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(tmp_path)),
            **emulator_suite.env(),
            "GPUPIPE_LOG_FORMAT": "text",
            "GPUPIPE_WORKER_HEALTH_PORT": str(port),
            "GPUPIPE_MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
            "OMP_NUM_THREADS": "1",
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gpu_worker", *args], cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        return process, port, log_path

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
