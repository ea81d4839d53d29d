"""The stack's own processes: the `api`, `on_upload` and `on_dead_letter` functions (each a
functions-framework server) and the workers (`python -m gpu_worker`), each with the port its
health check uses."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emulators import processes
from emulators.network import HOST, http_ok
from emulators.processes import ProcessRecord, Supervisor

MODEL_NAME = "tiny-sd"
"""The model the stack's workers serve."""
FUNCTION_TARGETS = ("api", "on_upload", "on_dead_letter")
# topology.yaml's `delivered_to` for each push-delivered function.
PUSHED_FUNCTIONS = ("on_upload", "on_dead_letter")

_FUNCTIONS_SOURCE = Path(__file__).resolve().parent.parent / "functions" / "main.py"


@dataclass(frozen=True)
class Service:
    """One stack process: a function or a worker, with the port its health check uses."""

    name: str
    port: int
    record: ProcessRecord

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def is_worker(self) -> bool:
        return self.name.startswith("worker-")

    def running(self) -> bool:
        return self.record.running()

    def answering(self) -> bool:
        """The function or worker answers. The api and the workers must say 200 on /healthz; an
        event function has no GET route, so any HTTP answer (405) shows it serves."""
        if self.name == "api" or self.is_worker:
            return http_ok(f"{self.url}/healthz", timeout=2)
        return http_ok(f"{self.url}/", timeout=2, client_errors_ok=self.name in PUSHED_FUNCTIONS)

    def with_children(self) -> Service:
        return replace(self, record=self.record.with_children())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, **self.record.to_json()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Service:
        return cls(name=raw["name"], port=int(raw["port"]), record=ProcessRecord.from_json(raw))


def launch_function(
    supervisor: Supervisor, target: str, port: int, env: Mapping[str, str], *, log_suffix: str = ""
) -> Service:
    argv = [
        sys.executable, "-m", "functions_framework",
        "--target", target,
        "--source", str(_FUNCTIONS_SOURCE),
        "--host", HOST,
        "--port", str(port),
    ]  # fmt: skip
    return Service(target, port, supervisor.launch(target, argv, env, log_name=target + log_suffix))


def launch_worker(supervisor: Supervisor, name: str, port: int, env: Mapping[str, str]) -> Service:
    """Start a worker whose /healthz listens on `port`."""
    argv = [sys.executable, "-m", "gpu_worker", "--worker-id", f"local-{name}"]
    worker_env = {**env, "GPUPIPE_WORKER_HEALTH_PORT": str(port)}
    return Service(name, port, supervisor.launch(name, argv, worker_env))


def wait_until_answering(supervisor: Supervisor, services: list[Service], deadline: float) -> None:
    supervisor.wait_until_answering([(s.record, s.answering) for s in services], deadline)


def once_answering(supervisor: Supervisor, started: Service, timeout: float) -> Service:
    """Wait for a just-started process to answer; stop it if it does not."""
    try:
        wait_until_answering(supervisor, [started], time.monotonic() + timeout)
    except BaseException:
        processes.stop([started.record.process], grace=5.0)
        raise
    return started.with_children()
