"""The whole local stack as processes: the emulator suite, the functions, a worker, a demo user.

`start(settings, environ=...)` runs, in order (the slow steps overlap):

1. the tiny model is built once into `<state>/models/tiny-sd` (`python -m gpu_worker.tiny_model`),
   in the background while the emulator suite starts (`emulators.suite.start`);
2. the `api`, `on_upload` and `on_dead_letter` functions start as functions-framework
   processes, and the Pub/Sub emulator is told to PUSH `uploads-handler` to `on_upload` and
   `jobs-dead-handler` to `on_dead_letter` (as Eventarc does in GCP);
3. the tiny model is registered in the local models bucket and made the active version, then
   the worker (`python -m gpu_worker`) starts and loads it from there;
4. a demo user is created with `gpupipe admin create-user demo --json` (or, after a restart,
   the previous one is kept);
5. every process is health-checked, `stack.json` records them and `local.env` is written
   with the suite's variables plus `GPUPIPE_API_URL`, `GPUPIPE_API_KEY` and `GPUPIPE_USER_ID`.

If any step fails, everything started so far is stopped and `StartupFailed` names the process
and carries the end of its log. Logs are under `<state>/logs/`.

The emulators keep everything in memory, so `stop()` saves what can be saved and the next
`start()` on the same state directory brings it back (`<state>/persist/`):

- Firestore (users, keys, jobs, batches, usage, models): exported by the emulator at `stop`
  and imported at `start`;
- the outputs bucket (images, errors.jsonl, summary.json): copied to disk and written back;
- the models bucket: the tiny model is registered again from its folder;
- Pub/Sub messages are not kept: jobs still queued or running are published again instead,
  so they finish after the restart;
- the inbox bucket is not kept: each upload has already become a batch, and writing it back
  would make new batches.

Ports are free ones unless the environment names them (`PUBSUB_EMULATOR_HOST`, ...,
`GPUPIPE_API_URL`); a restart reuses the previous ports when they are still free, so a shell
that sourced local.env keeps working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from core.ports import AdapterError, Filter
from core.settings import Settings
from emulators import processes, suite, topology
from emulators.errors import AlreadyRunning, NotRunning, StartupFailed, SuiteError
from emulators.network import HOST
from emulators.processes import ProcessId
from emulators.statefiles import exclusive, write_atomically
from emulators.suite import ProcessRecord, RunningSuite

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
PERSIST_DIR = "persist"
MODEL_NAME = "tiny-sd"
DEMO_USER_NAME = "demo"
FUNCTION_TARGETS = ("api", "on_upload", "on_dead_letter")
# topology.yaml's `delivered_to` for each push-delivered function.
PUSHED_FUNCTIONS = ("on_upload", "on_dead_letter")

_STATE_VERSION = 1
_LOCK_FILE = "stack.lock"
_PORTS_FILE = "ports.json"
_USER_FILE = "demo-user.json"
_FIRESTORE_DIR = "firestore"
_FIRESTORE_POINTER = "firestore.json"
_OUTPUTS_DIR = "outputs"
_OUTPUTS_INDEX = "index.json"
_REPO_ROOT = Path(__file__).resolve().parent.parent

# Worker settings for a local stack, unless the environment sets them: a short drain at
# `down` and shorter lease extensions. (A killed worker's job still comes back only after
# about a minute: the emulator keeps the streaming pull's initial 60 s ack deadline.)
_LOCAL_WORKER_DEFAULTS = {
    "GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS": "5",
    "GPUPIPE_WORKER_LEASE_EXTENSION_SECONDS": "15",
}

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    log.info("%s", message)


# --------------------------------------------------------------------------- records
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
        return processes.is_running(self.record.process)

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "name": self.name,
            "port": self.port,
            "process": [r.process.pid, r.process.start_ticks],
            "children": [[c.pid, c.start_ticks] for c in r.children],
            "log": r.log,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Service:
        record = ProcessRecord(
            name=raw["name"],
            process=ProcessId(*raw["process"]),
            children=tuple(ProcessId(*c) for c in raw["children"]),
            log=raw["log"],
        )
        return cls(name=raw["name"], port=int(raw["port"]), record=record)


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


# --------------------------------------------------------------------------- running stack
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
        popens: list[subprocess.Popen[bytes]] | None = None,
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
        # The processes this Python process started (empty for a stack loaded from its file).
        self._popens = popens if popens is not None else []
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
                    "answering": _healthy(s),
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
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SuiteError(f"unreadable stack state {path}: {exc}; check nothing runs, then remove it") from None
        if raw.get("version") != _STATE_VERSION:
            raise SuiteError(f"stack state {path} is from another version; stop its processes and remove it")
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
        write_atomically(self._persist / _PORTS_FILE, json.dumps(ports, indent=2) + "\n")
        write_atomically(self._persist / _USER_FILE, json.dumps(dataclasses.asdict(self.user)) + "\n")
        self.suite.write_local_env(self.env())

    @property
    def _persist(self) -> Path:
        path = self.state_dir / PERSIST_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---------------------------------------------------------------- workers
    def add_worker(self, environ: Mapping[str, str], *, timeout: float = 180.0) -> Service:
        """Start one more worker and return once it is ready (the e2e tests use it)."""
        # Never a name used before in this run: a killed worker's log must stay readable.
        self.workers_started += 1
        name = f"worker-{self.workers_started}"
        port = _free_port(avoid={s.port for s in self.services})
        env = {**environ, **self.env(), **self.worker_env, "GPUPIPE_WORKER_HEALTH_PORT": str(port)}
        service = _once_healthy(_spawn_worker(self.state_dir, name, env, self._popens), timeout)
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
        pids = {p.pid for p in doomed}
        dead = [p for p in self._popens if p.pid in pids]
        _reap(dead)
        self._popens[:] = [p for p in self._popens if p.pid not in pids]
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
        started = _spawn_function(self.state_dir, name, old.port, env, self._popens, log_suffix=".restarted")
        service = _once_healthy(started, timeout)
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
        _reap(self._popens)
        if survivors:
            warnings.append("still running after SIGKILL: " + ", ".join(str(p.pid) for p in survivors))
        if persist:
            if self.suite.is_running():
                warnings += _save_state(self)
            else:
                warnings.append("the emulator suite was not fully running; Firestore and outputs were not saved")
        self.suite.stop(grace=grace)
        (self.state_dir / STACK_FILE).unlink(missing_ok=True)
        return warnings


# --------------------------------------------------------------------------- start and stop
def start(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | str | None = None,
    workers: int = 1,
    model_dir: Path | str | None = None,
    worker_env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
    progress: Progress = _quiet,
) -> RunningStack:
    """Start the whole stack; returns once every process answers its health check.

    `environ` is what the processes inherit (the CLI passes os.environ). `model_dir` is where
    the tiny model is built (once; default `<state>/models/tiny-sd`). `worker_env` adds
    variables for the workers only. Raises `AlreadyRunning` when this state directory's stack
    runs, `StartupFailed` (after stopping everything it started) when a process fails."""
    began = time.monotonic()
    deadline = began + timeout
    state = Path(state_dir or settings.emulators.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    with exclusive(state, _LOCK_FILE):
        previous = RunningStack.load(state)
        if previous is not None:
            if previous.is_running():
                raise AlreadyRunning(f"already up: {previous.summary()}; state in {state}")
            progress(f"cleaning up a stack that was partly stopped ({', '.join(previous.dead_processes())})")
            for warning in previous.stop():
                progress(f"warning: {warning}")
        bare = RunningSuite.load(state)
        if bare is not None and bare.is_running():
            raise SuiteError(f"an emulator suite without the rest of the stack runs from {state}; stop it first")
        return _Start(state, settings, environ, workers, model_dir, worker_env, deadline, began, progress).run()


def stop(state_dir: Path | str, *, persist: bool = True) -> tuple[RunningStack, list[str]]:
    """Stop the stack recorded in `state_dir` (see `RunningStack.stop`); `NotRunning` if none."""
    state = Path(state_dir).resolve()
    with exclusive(state, _LOCK_FILE):
        stack = RunningStack.load(state)
        if stack is None:
            raise NotRunning(f"not running (no stack recorded in {state})")
        return stack, stack.stop(persist=persist)


class _Start:
    """One start attempt: each step in order, undone as a whole on failure."""

    def __init__(
        self,
        state: Path,
        settings: Settings,
        environ: Mapping[str, str],
        workers: int,
        model_dir: Path | str | None,
        worker_env: Mapping[str, str] | None,
        deadline: float,
        began: float,
        progress: Progress,
    ) -> None:
        self.state = state
        self.environ = dict(environ)
        self.workers = workers
        self.model_dir = Path(model_dir).resolve() if model_dir else state / "models" / MODEL_NAME
        self.worker_env = {
            **{k: v for k, v in _LOCAL_WORKER_DEFAULTS.items() if k not in environ},
            "GPUPIPE_MODEL_CACHE_DIR": str(state / "model-cache"),
            **(worker_env or {}),
        }
        self.deadline = deadline
        self.began = began
        self.progress = progress
        self.persist = state / PERSIST_DIR
        self.saved_ports = _read_json(self.persist / _PORTS_FILE) or {}
        self.settings = _with_saved_suite_ports(settings, self.saved_ports)
        self.suite: RunningSuite | None = None
        self.services: list[Service] = []
        self.popens: list[subprocess.Popen[bytes]] = []
        self.build: subprocess.Popen[bytes] | None = None

    def run(self) -> RunningStack:
        try:
            return self._run()
        except BaseException:
            self._abort()
            raise

    def _run(self) -> RunningStack:
        self._build_model_in_background()
        firestore_export = _latest_firestore_export(self.persist)
        self.progress("starting the emulators (Pub/Sub, Firestore, Cloud Storage)")
        try:
            self.suite = suite.start(
                self.settings, environ=self.environ, state_dir=self.state, firestore_import=firestore_export
            )
        except AlreadyRunning as exc:
            raise SuiteError(f"{exc}; stop it first") from None
        running_suite = self.suite
        self.progress(f"emulators up in {running_suite.startup_seconds:.1f} s")

        api_port = _port_of_url(running_suite.settings.api_url)
        ports = _choose_ports(
            {name: (api_port if name == "api" else None) for name in FUNCTION_TARGETS}, self.saved_ports
        )
        env = {**self.environ, **running_suite.env({"GPUPIPE_API_URL": f"http://{HOST}:{ports['api']}"})}
        for target in FUNCTION_TARGETS:
            self.services.append(_spawn_function(self.state, target, ports[target], env, self.popens))
        self.progress("functions starting: " + ", ".join(f"{t} :{ports[t]}" for t in FUNCTION_TARGETS))

        outputs = _restore_outputs(running_suite, self.persist / _OUTPUTS_DIR)
        model_version = self._register_model(running_suite)
        self.progress(
            f"model {MODEL_NAME} version {model_version} registered in gs://{self.settings.names.models_bucket}"
        )

        given = self.environ.get("GPUPIPE_WORKER_HEALTH_PORT")
        worker_ports = _choose_ports(
            {f"worker-{n}": (int(given) if given and n == 1 else None) for n in range(1, self.workers + 1)},
            self.saved_ports,
            taken=set(ports.values()),
        )
        worker_env = {**env, **self.worker_env}
        for name, port in worker_ports.items():
            self.services.append(
                _spawn_worker(self.state, name, {**worker_env, "GPUPIPE_WORKER_HEALTH_PORT": str(port)}, self.popens)
            )
        if worker_ports:
            self.progress(f"{len(worker_ports)} worker starting (loads the model, warms up)")

        functions = [s for s in self.services if not s.is_worker]
        _wait_until_healthy(functions, self.deadline)
        _push_to_functions(running_suite, {t: self._service(t).url for t in PUSHED_FUNCTIONS})
        self.progress("functions answering; Pub/Sub pushes uploads to on_upload and dead letters to on_dead_letter")

        user = self._demo_user(env, restored=firestore_export is not None)
        republished = _republish_unfinished(running_suite) if firestore_export is not None else 0
        restored = Restored(firestore=firestore_export is not None, outputs=outputs, republished=republished)

        _wait_until_healthy([s for s in self.services if s.is_worker], self.deadline)
        stack = RunningStack(
            state_dir=self.state,
            suite=running_suite,
            services=[_with_children(s) for s in self.services],
            user=user,
            model_version=model_version,
            startup_seconds=time.monotonic() - self.began,
            restored=restored,
            worker_env=self.worker_env,
            popens=self.popens,
        )
        stack.save()
        return stack

    def _service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    # ---------------------------------------------------------------- the model
    def _build_model_in_background(self) -> None:
        if (self.model_dir / "model_index.json").is_file():
            return
        log_path = self.state / suite.LOG_DIR / "model-build.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")
        self.progress(f"building the tiny model into {self.model_dir} (first start only)")
        # Built into a temporary folder and renamed, so an interrupted build is never mistaken for a model.
        partial = self.model_dir.with_name(self.model_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gpu_worker.tiny_model", str(partial)]
        self.build = processes.spawn(argv, log_path=log_path, env={**self.environ, "HF_HUB_OFFLINE": "1"})

    def _register_model(self, running_suite: RunningSuite) -> str:
        if self.build is not None:
            log_path = self.state / suite.LOG_DIR / "model-build.log"
            code = _wait_exit(self.build, self.deadline)
            if code != 0:
                what = "did not finish in time" if code is None else f"exited with code {code}"
                raise StartupFailed(f"building the tiny model {what}; log: {log_path}", processes.log_tail(log_path))
            partial = self.model_dir.with_name(self.model_dir.name + ".partial")
            shutil.rmtree(self.model_dir, ignore_errors=True)
            partial.rename(self.model_dir)
            self.build = None
        from core.model_registry import ModelRegistry

        backends = running_suite.backends
        registry = ModelRegistry(backends.documents, backends.blobs, self.settings.names.models_bucket)
        try:
            version = registry.register(MODEL_NAME, self.model_dir, promote=True, exist_ok=True)
        except (AdapterError, ValueError) as exc:
            raise StartupFailed(f"could not register the tiny model from {self.model_dir}: {exc}") from exc
        return version.version

    # ---------------------------------------------------------------- the demo user
    def _demo_user(self, env: Mapping[str, str], *, restored: bool) -> DemoUser:
        saved = _read_json(self.persist / _USER_FILE)
        api_url = f"{self._service('api').url}"
        if restored and saved is not None and _key_works(api_url, str(saved.get("api_key", ""))):
            self.progress(f"demo user {saved['user_id']} kept from the previous run")
            return DemoUser(user_id=str(saved["user_id"]), api_key=str(saved["api_key"]))
        gpupipe = Path(sys.executable).with_name("gpupipe")
        argv = [str(gpupipe)] if gpupipe.is_file() else [sys.executable, "-m", "client.cli"]
        argv += ["admin", "create-user", DEMO_USER_NAME, "--json"]
        try:
            done = subprocess.run(
                argv, env=dict(env), capture_output=True, text=True, timeout=max(5.0, self.deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            raise StartupFailed("`gpupipe admin create-user` did not finish in time") from None
        if done.returncode != 0:
            raise StartupFailed(
                f"`gpupipe admin create-user {DEMO_USER_NAME} --json` exited with code {done.returncode}",
                (done.stderr or done.stdout).strip()[-2000:],
            )
        try:
            created = json.loads(done.stdout)
            user = DemoUser(user_id=str(created["user_id"]), api_key=str(created["api_key"]))
        except (ValueError, KeyError, TypeError):
            raise StartupFailed("`gpupipe admin create-user --json` printed no user", done.stdout[-2000:]) from None
        self.progress(f"demo user {user.user_id} created")
        return user

    # ---------------------------------------------------------------- failure
    def _abort(self) -> None:
        if self.build is not None:
            processes.stop([p for p in [processes.identify(self.build.pid)] if p is not None], grace=2.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.build.wait(timeout=1)
        processes.stop([s.record.process for s in self.services], grace=5.0)
        _reap(self.popens)
        if self.suite is not None:
            with contextlib.suppress(SuiteError):
                self.suite.stop(grace=5.0)
        (self.state / STACK_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- processes
def _spawn_function(
    state: Path,
    target: str,
    port: int,
    env: Mapping[str, str],
    popens: list[subprocess.Popen[bytes]],
    *,
    log_suffix: str = "",
) -> Service:
    argv = [
        sys.executable, "-m", "functions_framework",
        "--target", target,
        "--source", str(_REPO_ROOT / "functions" / "main.py"),
        "--host", HOST,
        "--port", str(port),
    ]  # fmt: skip
    return _spawn(state, target, port, argv, env, popens, log_name=target + log_suffix)


def _spawn_worker(state: Path, name: str, env: Mapping[str, str], popens: list[subprocess.Popen[bytes]]) -> Service:
    """Start a worker; `env` must hold its GPUPIPE_WORKER_HEALTH_PORT."""
    argv = [sys.executable, "-m", "gpu_worker", "--worker-id", f"local-{name}"]
    return _spawn(state, name, int(env["GPUPIPE_WORKER_HEALTH_PORT"]), argv, env, popens)


def _spawn(
    state: Path,
    name: str,
    port: int,
    argv: list[str],
    env: Mapping[str, str],
    popens: list[subprocess.Popen[bytes]],
    *,
    log_name: str | None = None,
) -> Service:
    """Start a process detached; its Popen goes to `popens`, so that whoever stops it reaps it."""
    log_path = state / suite.LOG_DIR / f"{log_name or name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")  # a fresh log per start, so a failure's tail is this run's
    popen = processes.spawn(argv, log_path=log_path, env=env)
    popens.append(popen)
    ident = processes.identify(popen.pid)
    if ident is None:
        raise StartupFailed(f"{name} exited at once; log: {log_path}", processes.log_tail(log_path))
    return Service(name=name, port=port, record=ProcessRecord(name=name, process=ident, children=(), log=str(log_path)))


def _once_healthy(started: Service, timeout: float) -> Service:
    """Wait for a just-started process to answer; stop it if it does not."""
    try:
        _wait_until_healthy([started], time.monotonic() + timeout)
    except BaseException:
        processes.stop([started.record.process], grace=5.0)
        raise
    return _with_children(started)


def _reap(popens: list[subprocess.Popen[bytes]]) -> None:
    """Collect the exit status of stopped children, so none lingers as a zombie."""
    for popen in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=1)
    popens.clear()


def _with_children(service: Service) -> Service:
    """The record with the process's current children (gunicorn's worker, the emulator's JVM)."""
    record = dataclasses.replace(service.record, children=tuple(processes.descendants(service.record.process.pid)))
    return dataclasses.replace(service, record=record)


def _healthy(service: Service) -> bool:
    """The function or worker answers. The api and the workers must say 200 on /healthz; an
    event function has no GET route, so any HTTP answer (405) shows it serves."""
    url = f"{service.url}/healthz" if service.name == "api" or service.is_worker else f"{service.url}/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return service.name in PUSHED_FUNCTIONS and exc.code < 500
    except OSError:
        return False


def _wait_until_healthy(services: list[Service], deadline: float) -> None:
    pending = list(services)
    while pending:
        for service in list(pending):
            if not service.running():
                raise StartupFailed(
                    f"{service.name} exited while starting; log: {service.record.log}",
                    processes.log_tail(Path(service.record.log)),
                )
            if _healthy(service):
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            first = pending[0]
            raise StartupFailed(
                f"{names} did not become healthy in time; log: {first.record.log}",
                processes.log_tail(Path(first.record.log)),
            )
        time.sleep(0.25)


def _wait_exit(popen: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


# --------------------------------------------------------------------------- push, users, jobs
def _push_to_functions(running_suite: RunningSuite, urls: Mapping[str, str]) -> None:
    """Make the subscriptions delivered to `urls`' functions push subscriptions.

    The suite created them as pull subscriptions and `ensure_subscription` leaves an existing
    one as it is, so they are deleted and created again (nothing was published to them yet).
    The push URL carries the topic path, which functions-framework puts in the CloudEvent's
    `source`, as Eventarc does."""
    topo = topology.load(running_suite.topology_path)
    names = running_suite.settings.names
    admin = running_suite.backends.messaging_admin
    project = running_suite.settings.project_id
    endpoints = {}
    for logical, sub in topo.subscriptions.items():
        if sub.delivered_to in urls:
            topic = topology.concrete_name(names, "topic", sub.topic)
            endpoints[sub.delivered_to] = f"{urls[sub.delivered_to]}/projects/{project}/topics/{topic}"
            admin.delete_subscription(topology.concrete_name(names, "subscription", logical))
    try:
        topology.apply_messaging(topo, names, admin, push_endpoints=endpoints)
    except AdapterError as exc:
        raise StartupFailed(f"could not create the push subscriptions: {exc}") from exc


def _key_works(api_url: str, api_key: str) -> bool:
    if not api_key:
        return False
    try:
        response = requests.get(f"{api_url}/v1/usage", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    except requests.RequestException:
        return False
    return response.status_code == 200


def _republish_unfinished(running_suite: RunningSuite) -> int:
    """Publish a job message again for every job still queued or running: Pub/Sub lost the
    messages with the emulator. The lifecycle guard makes a duplicate harmless."""
    from core import collections as c
    from core.job_messages import publish_job
    from core.jobs import Job, JobStatus

    backends = running_suite.backends
    topic = running_suite.settings.names.jobs_topic
    count = 0
    unfinished = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
    for doc in backends.documents.iterate(c.JOBS, where=[Filter("status", "in", unfinished)]):
        job = Job.from_document(doc.id, doc.data)
        publish_job(backends.publisher, topic, job, timeout=10)
        count += 1
    return count


# --------------------------------------------------------------------------- persistence
def _save_state(stack: RunningStack) -> list[str]:
    """Export Firestore and copy the outputs bucket to `<state>/persist/`; warnings on failure."""
    warnings = []
    persist = stack.state_dir / PERSIST_DIR
    try:
        _export_firestore(stack.suite, persist)
    except (requests.RequestException, SuiteError, OSError) as exc:
        warnings.append(f"Firestore was not saved: {exc}")
    try:
        _snapshot_outputs(stack.suite, persist / _OUTPUTS_DIR)
    except (AdapterError, OSError) as exc:
        warnings.append(f"the outputs bucket was not saved: {exc}")
    return warnings


def _export_firestore(running_suite: RunningSuite, persist: Path) -> Path:
    """Ask the Firestore emulator to export everything, then point `firestore.json` at it."""
    exports = persist / _FIRESTORE_DIR
    exports.mkdir(parents=True, exist_ok=True)
    name = "export-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    project = running_suite.settings.project_id
    response = requests.post(
        f"http://{HOST}:{running_suite.ports.firestore}/emulator/v1/projects/{project}:export",
        json={
            "database": f"projects/{project}/databases/(default)",
            "export_directory": str(exports),
            "export_name": name,
        },
        timeout=60,
    )
    if not response.ok:
        raise SuiteError(
            f"the Firestore emulator refused the export: HTTP {response.status_code} {response.text[:200]}"
        )
    metadata = exports / name / f"{name}.overall_export_metadata"
    if not metadata.is_file():
        raise SuiteError(f"the Firestore export wrote no {metadata}")
    write_atomically(persist / _FIRESTORE_POINTER, json.dumps({"metadata": str(metadata)}) + "\n")
    for older in exports.iterdir():
        if older.name != name:
            shutil.rmtree(older, ignore_errors=True)
    return metadata


def _latest_firestore_export(persist: Path) -> Path | None:
    pointer = _read_json(persist / _FIRESTORE_POINTER)
    if pointer is None:
        return None
    metadata = Path(str(pointer.get("metadata", "")))
    return metadata if metadata.is_file() else None


def _snapshot_outputs(running_suite: RunningSuite, folder: Path) -> int:
    """Copy every object of the outputs bucket to `folder` (replacing the previous copy)."""
    blobs = running_suite.backends.blobs
    bucket = running_suite.settings.names.outputs_bucket
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "objects").mkdir(parents=True)
    index = []
    for number, info in enumerate(blobs.list(bucket)):
        (partial / "objects" / str(number)).write_bytes(blobs.read(bucket, info.name))
        index.append({"file": str(number), "name": info.name, "content_type": info.content_type})
    (partial / _OUTPUTS_INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return len(index)


def _restore_outputs(running_suite: RunningSuite, folder: Path) -> int:
    index = _read_json(folder / _OUTPUTS_INDEX, expect=list)
    if not index:
        return 0
    blobs = running_suite.backends.blobs
    bucket = running_suite.settings.names.outputs_bucket
    try:
        for entry in index:
            data = (folder / "objects" / entry["file"]).read_bytes()
            blobs.write(bucket, entry["name"], data, content_type=entry["content_type"] or "application/octet-stream")
    except (AdapterError, OSError, KeyError) as exc:
        raise StartupFailed(f"could not write the saved outputs back from {folder}: {exc}") from exc
    return len(index)


# --------------------------------------------------------------------------- ports
def _with_saved_suite_ports(settings: Settings, saved: Mapping[str, Any]) -> Settings:
    """Settings whose emulator hosts are the previous run's ports, where the environment names
    none and the port is free again."""
    update: dict[str, Any] = {}

    def reusable(key: str) -> int | None:
        port = saved.get(key)
        return port if isinstance(port, int) and _is_free(port) else None

    if settings.pubsub_emulator_host is None and (port := reusable("pubsub")):
        update["pubsub_emulator_host"] = f"{HOST}:{port}"
    if settings.firestore_emulator_host is None and (port := reusable("firestore")):
        update["firestore_emulator_host"] = f"{HOST}:{port}"
    if settings.storage_emulator_host is None and (port := reusable("storage_http")):
        update["storage_emulator_host"] = f"http://{HOST}:{port}"
    if settings.emulators.storage_https_port is None and (port := reusable("storage_https")):
        update["emulators"] = settings.emulators.model_copy(update={"storage_https_port": port})
    return settings.model_copy(update=update) if update else settings


def _choose_ports(
    wanted: Mapping[str, int | None], saved: Mapping[str, Any], *, taken: set[int] | None = None
) -> dict[str, int]:
    """A port per name: the given one (which must be free), else last run's if free, else any."""
    chosen: dict[str, int] = {}
    used = set(taken or ())
    for name, port in wanted.items():
        if port is not None:
            if not _is_free(port):
                raise SuiteError(f"port {port} for {name} is already in use")
            chosen[name] = port
        elif isinstance(saved.get(name), int) and saved[name] not in used and _is_free(saved[name]):
            chosen[name] = saved[name]
        else:
            chosen[name] = _free_port(avoid=used | set(chosen.values()))
        used.add(chosen[name])
    return chosen


def _port_of_url(url: str | None) -> int | None:
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname not in (HOST, "localhost") or parsed.port is None:
        raise SuiteError(f"GPUPIPE_API_URL={url}: the local stack serves on http://{HOST}:<port> only")
    return parsed.port


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_port(avoid: set[int] | None = None) -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in (avoid or set()):
            return port
    raise SuiteError("no free port on 127.0.0.1")


# --------------------------------------------------------------------------- helpers
def _read_json(path: Path, *, expect: type = dict) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, expect) else None
