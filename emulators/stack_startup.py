"""Starting the whole stack: one attempt, each step in order, undone as a whole on failure
(the steps are listed in `emulators.stack`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from core.ports import AdapterError
from core.settings import Settings
from emulators import persistence, processes, suite, topology
from emulators.errors import AlreadyRunning, StartupFailed, SuiteError
from emulators.network import HOST, choose_ports, is_free, port_of
from emulators.processes import Supervisor
from emulators.running_stack import DemoUser, Restored, RunningStack
from emulators.running_suite import RunningSuite
from emulators.services import (
    FUNCTION_TARGETS,
    MODEL_NAME,
    PUSHED_FUNCTIONS,
    Service,
    launch_function,
    launch_worker,
    wait_until_answering,
)
from emulators.statefiles import LOG_DIR, PERSIST_DIR, STACK_FILE

DEMO_USER_NAME = "demo"

# Worker settings for a local stack, unless the environment sets them: a short drain at
# `down` and shorter lease extensions. (A killed worker's job still comes back only after
# about a minute: the emulator keeps the streaming pull's initial 60 s ack deadline.)
_LOCAL_WORKER_DEFAULTS = {
    "GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS": "5",
    "GPUPIPE_WORKER_LEASE_EXTENSION_SECONDS": "15",
}

Progress = Callable[[str], None]


class StackStartup:
    """One start attempt: `run` does each step in order and stops everything it started when
    one fails."""

    def __init__(
        self,
        state: Path,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        workers: int,
        worker_health_port: int | None,
        model_dir: Path | str | None,
        worker_env: Mapping[str, str] | None,
        deadline: float,
        began: float,
        progress: Progress,
    ) -> None:
        self.state = state
        self.environ = dict(environ)
        self.workers = workers
        self.worker_health_port = worker_health_port
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
        self.saved_ports = persistence.saved_ports(self.persist)
        self.settings = _with_saved_suite_ports(settings, self.saved_ports)
        self.suite: RunningSuite | None = None
        self.services: list[Service] = []
        self.supervisor = Supervisor(state / LOG_DIR)
        self.build: subprocess.Popen[bytes] | None = None

    def run(self) -> RunningStack:
        try:
            return self._run()
        except BaseException:
            self._abort()
            raise

    def _run(self) -> RunningStack:
        self._build_model_in_background()
        firestore_export = persistence.latest_firestore_export(self.persist)
        self.progress("starting the emulators (Pub/Sub, Firestore, Cloud Storage)")
        try:
            self.suite = suite.start(
                self.settings, environ=self.environ, state_dir=self.state, firestore_import=firestore_export
            )
        except AlreadyRunning as exc:
            raise SuiteError(f"{exc}; stop it first") from None
        running_suite = self.suite
        self.progress(f"emulators up in {running_suite.startup_seconds:.1f} s")

        api_port = port_of(running_suite.settings.api_url, "GPUPIPE_API_URL")
        ports = choose_ports(
            FUNCTION_TARGETS,
            given={"api": (api_port, "GPUPIPE_API_URL")} if api_port is not None else None,
            saved=self.saved_ports,
        )
        env = {**self.environ, **running_suite.env({"GPUPIPE_API_URL": f"http://{HOST}:{ports['api']}"})}
        for target in FUNCTION_TARGETS:
            self.services.append(launch_function(self.supervisor, target, ports[target], env))
        self.progress("functions starting: " + ", ".join(f"{t} :{ports[t]}" for t in FUNCTION_TARGETS))

        outputs = persistence.restore_outputs(running_suite, self.persist)
        model_version = self._register_model(running_suite)
        self.progress(
            f"model {MODEL_NAME} version {model_version} registered in gs://{self.settings.names.models_bucket}"
        )

        given = self.worker_health_port
        worker_ports = choose_ports(
            [f"worker-{n}" for n in range(1, self.workers + 1)],
            given={"worker-1": (given, "GPUPIPE_WORKER_HEALTH_PORT")} if given is not None and self.workers else None,
            saved=self.saved_ports,
            avoid=set(ports.values()),
        )
        worker_env = {**env, **self.worker_env}
        for name, port in worker_ports.items():
            self.services.append(launch_worker(self.supervisor, name, port, worker_env))
        if worker_ports:
            self.progress(f"{len(worker_ports)} worker starting (loads the model, warms up)")

        functions = [s for s in self.services if not s.is_worker]
        wait_until_answering(self.supervisor, functions, self.deadline)
        _push_to_functions(running_suite, {t: self._service(t).url for t in PUSHED_FUNCTIONS})
        self.progress("functions answering; Pub/Sub pushes uploads to on_upload and dead letters to on_dead_letter")

        user = self._demo_user(env, restored=firestore_export is not None)
        republished = persistence.republish_unfinished(running_suite) if firestore_export is not None else 0
        restored = Restored(firestore=firestore_export is not None, outputs=outputs, republished=republished)

        wait_until_answering(self.supervisor, [s for s in self.services if s.is_worker], self.deadline)
        stack = RunningStack(
            state_dir=self.state,
            suite=running_suite,
            services=[s.with_children() for s in self.services],
            user=user,
            model_version=model_version,
            startup_seconds=time.monotonic() - self.began,
            restored=restored,
            worker_env=self.worker_env,
            supervisor=self.supervisor,
        )
        stack.save()
        return stack

    def _service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    # ---------------------------------------------------------------- the model
    def _build_model_in_background(self) -> None:
        if (self.model_dir / "model_index.json").is_file():
            return
        log_path = self.state / LOG_DIR / "model-build.log"
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
            log_path = self.state / LOG_DIR / "model-build.log"
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
        saved = persistence.saved_user(self.persist)
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
        self.supervisor.reap()
        if self.suite is not None:
            with contextlib.suppress(SuiteError):
                self.suite.stop(grace=5.0)
        (self.state / STACK_FILE).unlink(missing_ok=True)


def _wait_exit(popen: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


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


def _with_saved_suite_ports(settings: Settings, saved: Mapping[str, Any]) -> Settings:
    """Settings whose emulator hosts are the previous run's ports, where the environment names
    none and the port is free again."""
    update: dict[str, Any] = {}

    def reusable(key: str) -> int | None:
        port = saved.get(key)
        return port if isinstance(port, int) and is_free(port) else None

    if settings.pubsub_emulator_host is None and (port := reusable("pubsub")):
        update["pubsub_emulator_host"] = f"{HOST}:{port}"
    if settings.firestore_emulator_host is None and (port := reusable("firestore")):
        update["firestore_emulator_host"] = f"{HOST}:{port}"
    if settings.storage_emulator_host is None and (port := reusable("storage_http")):
        update["storage_emulator_host"] = f"http://{HOST}:{port}"
    if settings.emulators.storage_https_port is None and (port := reusable("storage_https")):
        update["emulators"] = settings.emulators.model_copy(update={"storage_https_port": port})
    return settings.model_copy(update=update) if update else settings
