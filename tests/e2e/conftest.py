"""The e2e tier: the whole local stack as processes, driven only through its public surfaces.

One stack per test session (`e2e`), started through `emulators.stack` exactly as `make up`
starts it, but with its own state directory and free ports. Tests reach it only as a user
would: HTTP (the SDK), the `gpupipe` command (users are created with `gpupipe admin`),
`gcloud storage` and `gcloud pubsub`. The tiny model is built once into pytest's cache and
reused by later sessions. A few tests act on the stack's processes (kill a worker, restart the
stack): that is the scenario they test, not how they observe it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.sdk import Client
from core.settings import Settings
from emulators import processes
from emulators import stack as local_stack
from emulators.stack import RunningStack

# Nothing of a developer's shell (a sourced .gpupipe/local.env) may point the stack elsewhere.
_FOREIGN_PREFIXES = ("GPUPIPE_", "CLOUDSDK_")
_FOREIGN = (
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "BOTO_CONFIG",
)
_WORKER_ENV = {"GPUPIPE_WORKER_LEASE_EXTENSION_SECONDS": "10", "GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS": "3"}
_GCLOUD = shutil.which("gcloud")


@dataclass(frozen=True)
class User:
    user_id: str
    api_key: str


class E2EStack:
    """The session's stack and the public tools to use it. `restart()` replaces `stack`."""

    def __init__(self, state_dir: Path, model_dir: Path, environ: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.model_dir = model_dir
        self.environ = environ
        self.stack = self._start()
        self.startups = [self.stack.startup_seconds]

    def _start(self) -> RunningStack:
        settings = Settings.from_env({"GPUPIPE_ENV": "local"})
        return local_stack.start(
            settings,
            environ=self.environ,
            state_dir=self.state_dir,
            model_dir=self.model_dir,
            worker_env=_WORKER_ENV,
        )

    @property
    def env(self) -> dict[str, str]:
        """The environment a shell gets from `source .gpupipe/local.env`."""
        return {**self.environ, **self.stack.env()}

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def inbox(self) -> str:
        return self.stack.settings.names.inbox_bucket

    @property
    def uploads_topic(self) -> str:
        return self.stack.settings.names.uploads_topic

    def restart(self) -> None:
        warnings = self.stack.stop()
        assert warnings == [], warnings
        self.stack = self._start()
        self.startups.append(self.stack.startup_seconds)

    # ------------------------------------------------------------------ public tools
    def gpupipe(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        gpupipe = Path(sys.executable).with_name("gpupipe")
        argv = [str(gpupipe)] if gpupipe.is_file() else [sys.executable, "-m", "client.cli"]
        return subprocess.run(
            [*argv, *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def gcloud(self, *args: str, timeout: float = 120) -> str:
        if _GCLOUD is None:
            pytest.fail("gcloud is not on PATH: the e2e tier uploads with the real Google Cloud CLI")
        done = subprocess.run([_GCLOUD, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"gcloud {' '.join(args)} failed: {done.stderr}"
        return done.stdout

    def create_user(self, name: str = "e2e") -> User:
        done = self.gpupipe("admin", "create-user", name, "--json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        return User(created["user_id"], created["api_key"])

    def client(self, user: User) -> Client:
        return Client(self.api_url, user.api_key)

    def upload(self, source: Path, user: User, name: str) -> tuple[str, int]:
        """`gcloud storage cp` the file to the user's inbox; returns the object URI and its generation."""
        uri = f"gs://{self.inbox}/{user.user_id}/{name}"
        self.gcloud("storage", "cp", str(source), uri)
        described = json.loads(self.gcloud("storage", "objects", "describe", uri, "--format=json"))
        return uri, int(described["generation"])

    def kill_worker(self, name: str) -> None:
        """SIGKILL one worker process (no drain, no nack: a crash)."""
        worker = self.stack.service(name)
        processes.signal_all([worker.record.process], signal.SIGKILL)
        assert processes.wait_gone([worker.record.process], timeout=10) == []
        assert self.stack.forget_dead_workers() == [name]


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[E2EStack]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES) and k not in _FOREIGN}
    # Built once into pytest's cache (deterministic: fixed seed); without the cache, per session.
    cache = getattr(pytestconfig, "cache", None)
    cache_dir = cache.mkdir("gpupipe-tiny-model") if cache is not None else tmp_path_factory.mktemp("model")
    model_dir = cache_dir / local_stack.MODEL_NAME
    handle = E2EStack(tmp_path_factory.mktemp("e2e-stack"), model_dir, environ)
    try:
        yield handle
    finally:
        handle.stack.stop(persist=False)
        pytestconfig.stash[_STARTUPS] = handle.startups


_STARTUPS = pytest.StashKey[list[float]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    startups = config.stash.get(_STARTUPS, None)
    if startups:
        terminalreporter.write_line("e2e stack: started in " + ", ".join(f"{s:.1f} s" for s in startups))


def jsonl(path: Path, lines: Sequence[dict[str, object] | str]) -> Path:
    """Write JSON lines (a str is written as it is: a deliberately broken line)."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll `predicate()` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
