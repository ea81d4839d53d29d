"""A started stack: the emulator suite, the function and worker processes, the demo user; its
record (stack.json) and what can be done to it while it runs (add a worker, kill a process,
restart a function, stop it all)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from emulators import persistence, processes
from emulators.errors import SuiteError
from emulators.network import choose_ports
from emulators.processes import Supervisor
from emulators.running_suite import RunningSuite
from emulators.services import MODEL_NAME, Service, launch_function, launch_worker, once_answering
from emulators.statefiles import LOG_DIR, PERSIST_DIR, STACK_FILE, read_record, write_atomically

_STATE_VERSION = 2  # 2: process start times are psutil's create_time (seconds), not clock ticks


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    api_key: str


@dataclass(frozen=True)
class Restored:
    """What `start` brought back from the previous run's `stop`."""

    firestore: bool = False
    outputs: int = 0
    republished: int = 0

    def describe(self) -> str:
        if not self.firestore and not self.outputs:
            return "fresh state"
        return f"restored Firestore and {self.outputs} output objects; {self.republished} unfinished jobs queued again"


class RunningStack:
    """A started stack: the emulator suite, the function and worker processes, the demo user."""

    def __init__(
        self,
        *,
        state_dir: Path,
        suite: RunningSuite,
        services: list[Service],
        user: DemoUser,
        model_version: str,
        startup_seconds: float,
        restored: Restored,
        worker_env: Mapping[str, str],
        supervisor: Supervisor | None = None,
        workers_started: int | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.suite = suite
        self.services = services
        self.user = user
        self.model_version = model_version
        self.startup_seconds = startup_seconds
        self.restored = restored
        self.worker_env = dict(worker_env)
        self.workers_started = workers_started if workers_started is not None else len(self.workers)
        # The processes this Python process started (none yet for a stack loaded from its file).
        self._supervisor = supervisor if supervisor is not None else Supervisor(state_dir / LOG_DIR)
        # Workers may be added from one thread while another kills (chaos runs).
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- views
    @property
    def settings(self) -> Settings:
        return self.suite.settings

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    @property
    def api_url(self) -> str:
        return self.service("api").url

    @property
    def workers(self) -> list[Service]:
        return [s for s in self.services if s.is_worker]

    def env(self) -> dict[str, str]:
        """Every variable a client of the stack needs: what local.env exports."""
        return self.suite.env(
            {
                "GPUPIPE_API_URL": self.api_url,
                "GPUPIPE_API_KEY": self.user.api_key,
                "GPUPIPE_USER_ID": self.user.user_id,
            }
        )

    def dead_processes(self) -> list[str]:
        dead = self.suite.dead_processes()
        dead += [f"{s.name} pid {s.record.process.pid}" for s in self.services if not s.running()]
        return dead

    def is_running(self) -> bool:
        return not self.dead_processes()

    def summary(self) -> str:
        workers = len(self.workers)
        return f"api {self.api_url}, {workers} worker{'s' if workers != 1 else ''}, user {self.user.user_id}"

    def describe(self) -> dict[str, Any]:
        """What `status --json` prints."""
        return {
            **self.suite.describe(),
            "running": self.is_running(),
            "api_url": self.api_url,
            "user_id": self.user.user_id,
            "model": {"name": MODEL_NAME, "version": self.model_version},
            "stack_startup_seconds": round(self.startup_seconds, 3),
            "services": [
                {
                    "name": s.name,
                    "pid": s.record.process.pid,
                    "running": s.running(),
                    "url": s.url,
                    "answering": s.answering(),
                    "log": s.record.log,
                }
                for s in self.services
            ],
        }

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, state_dir: Path | str) -> RunningStack | None:
        """The stack recorded in `state_dir`, whether or not its processes still run."""
        state = Path(state_dir).resolve()
        path = state / STACK_FILE
        raw = read_record(path, version=_STATE_VERSION, what="stack", hint="check nothing runs, then remove it")
        if raw is None:
            return None
        running_suite = RunningSuite.load(state)
        if running_suite is None:
            raise SuiteError(f"stack state {path} has no emulator suite beside it; stop its processes and remove it")
        return cls(
            state_dir=state,
            suite=running_suite,
            services=[Service.from_json(s) for s in raw["services"]],
            user=DemoUser(**raw["user"]),
            model_version=raw["model_version"],
            startup_seconds=raw["startup_seconds"],
            restored=Restored(**raw["restored"]),
            worker_env=raw["worker_env"],
            workers_started=raw.get("workers_started"),
        )

    def save(self) -> None:
        """Write stack.json, the ports and demo user for the next start, and local.env."""
        state = {
            "version": _STATE_VERSION,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(self.startup_seconds, 3),
            "services": [s.to_json() for s in self.services],
            "user": dataclasses.asdict(self.user),
            "model_version": self.model_version,
            "restored": dataclasses.asdict(self.restored),
            "worker_env": self.worker_env,
            "workers_started": self.workers_started,
        }
        write_atomically(self.state_dir / STACK_FILE, json.dumps(state, indent=2) + "\n")
        ports = {**dataclasses.asdict(self.suite.ports), **{s.name: s.port for s in self.services}}
        persistence.save_ports_and_user(self._persist, ports, dataclasses.asdict(self.user))
        self.suite.write_local_env(self.env())

    @property
    def _persist(self) -> Path:
        path = self.state_dir / PERSIST_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---------------------------------------------------------------- workers and functions
    def add_worker(self, environ: Mapping[str, str], *, timeout: float = 180.0) -> Service:
        """Start one more worker and return once it is ready (the e2e tests use it)."""
        # Never a name used before in this run: a killed worker's log must stay readable.
        self.workers_started += 1
        name = f"worker-{self.workers_started}"
        port = choose_ports([name], avoid={s.port for s in self.services})[name]
        env = {**environ, **self.env(), **self.worker_env}
        service = once_answering(self._supervisor, launch_worker(self._supervisor, name, port, env), timeout)
        with self._lock:
            self.services.append(service)
            self.save()
        return service

    def kill(self, name: str) -> None:
        """SIGKILL one function or worker with its children (a crash: no drain, no nack) and wait
        until it is gone. Chaos tests and `make chaos` use it."""
        service = self.service(name)
        doomed = [*service.record.all(), *processes.descendants(service.record.process.pid)]
        processes.signal_all(doomed, signal.SIGKILL)
        left = processes.wait_gone(doomed, timeout=10)
        self._supervisor.reap(p.pid for p in doomed)
        if left:
            raise SuiteError(f"{name} survived SIGKILL: " + ", ".join(str(p.pid) for p in left))

    def restart_function(self, name: str, environ: Mapping[str, str], *, timeout: float = 60.0) -> Service:
        """Start function `name` again on its port (after it died) and return once it answers.
        Push subscriptions and clients keep their URLs."""
        old = self.service(name)
        if old.is_worker:
            raise ValueError(f"{name} is a worker: use add_worker")
        if old.running():
            raise SuiteError(f"{name} still runs (pid {old.record.process.pid})")
        env = {**environ, **self.suite.env({"GPUPIPE_API_URL": self.api_url})}
        started = launch_function(self._supervisor, name, old.port, env, log_suffix=".restarted")
        service = once_answering(self._supervisor, started, timeout)
        with self._lock:
            self.services = [service if s.name == name else s for s in self.services]
            self.save()
        return service

    def forget_dead_workers(self) -> list[str]:
        """Drop the records of workers that are gone (killed on purpose, e.g. by a test)."""
        with self._lock:
            dead = [s.name for s in self.workers if not s.running()]
            self.services = [s for s in self.services if s.name not in dead]
            self.save()
        return dead

    # ---------------------------------------------------------------- stop
    def stop(self, *, persist: bool = True, grace: float = 10.0) -> list[str]:
        """Stop the functions and workers, save Firestore and the outputs bucket (when `persist`
        and the emulators still answer), then stop the emulator suite. Returns warnings about
        what could not be saved; raises `StopFailed` only if processes survive SIGKILL."""
        warnings: list[str] = []
        own = [p for s in self.services for p in s.record.all()]
        survivors = processes.stop(own, grace=grace)
        self._supervisor.reap()
        if survivors:
            warnings.append("still running after SIGKILL: " + ", ".join(str(p.pid) for p in survivors))
        if persist:
            if self.suite.is_running():
                warnings += persistence.save_state(self.suite, self.state_dir / PERSIST_DIR)
            else:
                warnings.append("the emulator suite was not fully running; Firestore and outputs were not saved")
        self.suite.stop(grace=grace)
        (self.state_dir / STACK_FILE).unlink(missing_ok=True)
        return warnings
