"""The local emulator suite: the official Pub/Sub and Firestore emulators plus fake-gcs-server.

`start(settings, environ=...)` launches the three on 127.0.0.1, waits until each answers,
creates topology.yaml's resources through the GCP adapters, and records everything under the
state directory (`.gpupipe/` by default):

    suite.json   pids (with start times) of every process, children included; ports; env
    local.env    `export` lines for a shell (`source .gpupipe/local.env`)
    logs/        one log per process
    gcloud/      a throwaway CLOUDSDK_CONFIG, so `gcloud storage cp` never touches the user's
    boto.cfg     BOTO_CONFIG for gsutil (HTTPS port, certificate checks off)

`RunningSuite.load(state_dir)` finds a suite that another process started (the CLI's `down`
and `status`). `stop()` ends exactly the recorded processes; `reset()` empties every emulator
and re-creates the topology (the test fixtures call it between tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from adapters.factory import Backends, bootstrap
from core.ports import AdapterError
from core.settings import ENV_VARS, Settings
from emulators import processes, topology
from emulators.errors import AlreadyRunning, NotRunning, StartupFailed, StopFailed, SuiteError
from emulators.network import HOST, Ports, choose_ports, http_ok, https_ok
from emulators.processes import ProcessId
from emulators.programs import Programs, find_programs
from emulators.statefiles import exclusive, write_atomically

log = logging.getLogger(__name__)

STATE_FILE = "suite.json"
ENV_FILE = "local.env"
BOTO_FILE = "boto.cfg"
GCLOUD_CONFIG_DIR = "gcloud"
LOG_DIR = "logs"
_LOCK_FILE = "suite.lock"
_STATE_VERSION = 1

_FAKE_GCS_EVENTS = {
    "OBJECT_FINALIZE": "finalize",
    "OBJECT_DELETE": "delete",
    "OBJECT_METADATA_UPDATE": "metadataUpdate",
}


# --------------------------------------------------------------------------- running suite
@dataclass(frozen=True)
class ProcessRecord:
    name: str
    process: ProcessId
    children: tuple[ProcessId, ...]
    log: str

    def all(self) -> list[ProcessId]:
        return [self.process, *self.children]


class RunningSuite:
    """A started suite: its settings (backend "gcp", emulator hosts), processes and files."""

    def __init__(
        self,
        *,
        state_dir: Path,
        settings: Settings,
        ports: Ports,
        records: list[ProcessRecord],
        topology_path: Path,
        startup_seconds: float,
        popens: list[subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.settings = settings
        self.ports = ports
        self.records = records
        self.topology_path = topology_path
        self.startup_seconds = startup_seconds
        self._popens = popens or []

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, state_dir: Path) -> RunningSuite | None:
        """The suite recorded in `state_dir`, whether or not its processes still run."""
        path = Path(state_dir).resolve() / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SuiteError(f"unreadable suite state {path}: {exc}; check no emulator runs, then remove it") from None
        if raw.get("version") != _STATE_VERSION:
            raise SuiteError(f"suite state {path} is from another version; stop its processes and remove it")
        records = [
            ProcessRecord(
                name=r["name"],
                process=ProcessId(*r["process"]),
                children=tuple(ProcessId(*c) for c in r["children"]),
                log=r["log"],
            )
            for r in raw["processes"]
        ]
        return cls(
            state_dir=path.parent,
            settings=Settings.from_env(raw["env"]),
            ports=Ports(**raw["ports"]),
            records=records,
            topology_path=Path(raw["topology"]),
            startup_seconds=raw["startup_seconds"],
        )

    def _save(self) -> None:
        state = {
            "version": _STATE_VERSION,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(self.startup_seconds, 3),
            "ports": asdict(self.ports),
            "processes": [
                {
                    "name": r.name,
                    "process": [r.process.pid, r.process.start_ticks],
                    "children": [[c.pid, c.start_ticks] for c in r.children],
                    "log": r.log,
                }
                for r in self.records
            ],
            "topology": str(self.topology_path),
            "env": self.env(),
        }
        write_atomically(self.state_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every variable a client of the suite needs (what local.env exports), plus `extra`."""
        storage = f"http://{HOST}:{self.ports.storage_http}"
        project = self.settings.project_id
        names_by_var = {var: path.split(".", 1)[1] for var, path in ENV_VARS.items() if path.startswith("names.")}
        env = {
            "GPUPIPE_ENV": "local",
            "GOOGLE_CLOUD_PROJECT": project,
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{self.ports.pubsub}",
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{self.ports.firestore}",
            "STORAGE_EMULATOR_HOST": storage,
            "GPUPIPE_PUBLIC_STORAGE_URL": storage,
            **{var: str(getattr(self.settings.names, field)) for var, field in names_by_var.items()},
            # gcloud: a private config dir, no credentials, storage and pubsub on the emulators.
            "CLOUDSDK_CONFIG": str(self.state_dir / GCLOUD_CONFIG_DIR),
            "CLOUDSDK_CORE_PROJECT": project,
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{storage}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{HOST}:{self.ports.pubsub}/",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
            # gsutil speaks only HTTPS to fake-gcs-server; the boto file points it there.
            "BOTO_CONFIG": str(self.state_dir / BOTO_FILE),
        }
        env.update(extra or {})
        return env

    def write_local_env(self, extra: Mapping[str, str] | None = None) -> Path:
        """Write local.env (`export` lines) with `env(extra)`; the whole-stack runner adds its own."""
        lines = ["# Written by `python -m emulators up`; valid while the suite runs. `source` it."]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.env(extra).items()]
        path = self.state_dir / ENV_FILE
        write_atomically(path, "\n".join(lines) + "\n")
        return path

    def _write_client_config(self) -> None:
        (self.state_dir / GCLOUD_CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        boto = (
            "# gsutil -> fake-gcs-server over HTTPS (self-signed certificate); written by `python -m emulators up`\n"
            "[Credentials]\n"
            f"gs_json_host = {HOST}\n"
            f"gs_json_port = {self.ports.storage_https}\n"
            f"gs_host = {HOST}\n"
            f"gs_port = {self.ports.storage_https}\n"
            "[Boto]\n"
            "https_validate_certificates = False\n"
            "[GSUtil]\n"
            "prefer_api = json\n"
            "software_update_check_period = 0\n"
            f"default_project_id = {self.settings.project_id}\n"
        )
        write_atomically(self.state_dir / BOTO_FILE, boto)

    def _forget(self) -> None:
        for name in (STATE_FILE, ENV_FILE, BOTO_FILE):
            (self.state_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / GCLOUD_CONFIG_DIR, ignore_errors=True)

    # ---------------------------------------------------------------- health
    def processes(self) -> list[ProcessId]:
        return [p for r in self.records for p in r.all()]

    def dead_processes(self) -> list[str]:
        return [f"{r.name} pid {p.pid}" for r in self.records for p in r.all() if not processes.is_running(p)]

    def is_running(self) -> bool:
        return not self.dead_processes()

    def endpoints(self) -> dict[str, str]:
        return {
            "pubsub": f"{HOST}:{self.ports.pubsub}",
            "firestore": f"{HOST}:{self.ports.firestore}",
            "storage": f"http://{HOST}:{self.ports.storage_http}",
            "storage_https": f"https://{HOST}:{self.ports.storage_https}",
        }

    def answering(self) -> dict[str, bool]:
        return {
            "pubsub": http_ok(f"http://{HOST}:{self.ports.pubsub}/"),
            "firestore": http_ok(f"http://{HOST}:{self.ports.firestore}/"),
            "storage": http_ok(f"http://{HOST}:{self.ports.storage_http}/storage/v1/b"),
            "storage_https": https_ok(self.ports.storage_https),
        }

    def summary(self) -> str:
        e = self.endpoints()
        return (
            f"pubsub {e['pubsub']}, firestore {e['firestore']}, storage {e['storage']} "
            f"(gsutil: {e['storage_https']}); state in {self.state_dir}"
        )

    def describe(self) -> dict[str, Any]:
        """What `status --json` prints."""
        return {
            "running": self.is_running(),
            "state_dir": str(self.state_dir),
            "env_file": str(self.state_dir / ENV_FILE),
            "project_id": self.settings.project_id,
            "startup_seconds": self.startup_seconds,
            "endpoints": self.endpoints(),
            "answering": self.answering(),
            "processes": [
                {
                    "name": r.name,
                    "pid": r.process.pid,
                    "running": processes.is_running(r.process),
                    "children": [{"pid": c.pid, "running": processes.is_running(c)} for c in r.children],
                    "log": r.log,
                }
                for r in self.records
            ],
        }

    # ---------------------------------------------------------------- reset and stop
    @functools.cached_property
    def backends(self) -> Backends:
        """GCP adapters pointed at this suite (built on first use)."""
        return bootstrap(self.settings)

    def reset(self) -> None:
        """Empty every emulator and re-create the topology: Pub/Sub `POST /reset`, Firestore's
        delete-all-documents endpoint, every object (all generations) of every bucket deleted."""
        topo = topology.load(self.topology_path)
        with requests.Session() as http:
            _check(http.post(f"http://{HOST}:{self.ports.pubsub}/reset", timeout=10), "reset Pub/Sub")
            topology.apply_messaging(topo, self.settings.names, self.backends.messaging_admin)
            documents = (
                f"http://{HOST}:{self.ports.firestore}/emulator/v1/projects/{self.settings.project_id}"
                "/databases/(default)/documents"
            )
            _check(http.delete(documents, timeout=10), "reset Firestore")
            self._empty_buckets(http)
        topology.apply_buckets(topo, self.settings.names, self.backends.blobs)

    def _empty_buckets(self, http: requests.Session) -> None:
        """Delete every object of every bucket. fake-gcs-server cannot delete noncurrent
        generations (it answers 404), so a versioned bucket that keeps some is dropped and
        created again, still versioned."""
        base = f"http://{HOST}:{self.ports.storage_http}/storage/v1/b"
        response = http.get(base, params={"project": self.settings.project_id}, timeout=10)
        _check(response, "list buckets")
        for bucket in response.json().get("items", []):
            url = f"{base}/{urllib.parse.quote(bucket['name'], safe='')}"
            for name in _object_names(http, url, versions=False):
                deleted = http.delete(f"{url}/o/{urllib.parse.quote(name, safe='')}", timeout=10)
                if deleted.status_code != 404:
                    _check(deleted, f"delete gs://{bucket['name']}/{name}")
            if _object_names(http, url, versions=True):
                _check(http.delete(url, timeout=10), f"delete bucket {bucket['name']}")
                again = {"name": bucket["name"], "versioning": bucket.get("versioning", {"enabled": False})}
                created = http.post(base, params={"project": self.settings.project_id}, json=again, timeout=10)
                _check(created, f"re-create bucket {bucket['name']}")

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop every recorded process (and any child it has now), wait for them to exit,
        SIGKILL after `grace`; then remove the state files (logs stay)."""
        survivors = processes.stop(self.processes(), grace=grace)
        for popen in self._popens:
            # Reap our own children so they do not linger as zombies.
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)
        if survivors:
            pids = ", ".join(str(p.pid) for p in survivors)
            raise StopFailed(f"processes still running after SIGKILL: {pids}")
        self._forget()


# --------------------------------------------------------------------------- start and stop
def start(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | str | None = None,
    topology_path: Path = topology.DEFAULT_PATH,
    firestore_import: Path | None = None,
) -> RunningSuite:
    """Start the suite, create the topology and write local.env; returns once all three answer.

    `environ` is the environment the emulator processes inherit (the CLI passes os.environ).
    `firestore_import` is a Firestore emulator export (`*.overall_export_metadata`) to load at
    start (the whole-stack runner keeps Firestore across restarts with it).
    Raises `AlreadyRunning` when this state directory's suite still runs, and the other
    `SuiteError`s for missing programs, taken ports and processes that do not come up; on any
    failure every process started so far is stopped again."""
    state = Path(state_dir or settings.emulators.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    with exclusive(state, _LOCK_FILE):
        previous = RunningSuite.load(state)
        if previous is not None:
            if previous.is_running():
                raise AlreadyRunning(f"already up: {previous.summary()}")
            log.warning("cleaning up a suite that was partly stopped: %s", ", ".join(previous.dead_processes()))
            previous.stop()
        try:
            topo = topology.load(topology_path)
            notification = topology.upload_notification(topo, settings.names)
        except topology.TopologyError as exc:
            raise SuiteError(str(exc)) from None
        launch = _Launch(state, settings, find_programs(settings, environ), choose_ports(settings), environ)
        launch.firestore_import = firestore_import
        try:
            return launch.run(topo, topology_path, notification)
        except BaseException:
            launch.abort()
            raise


def stop(state_dir: Path | str) -> RunningSuite:
    """Stop the suite recorded in `state_dir`; `NotRunning` when there is none."""
    state = Path(state_dir).resolve()
    if not (state / STATE_FILE).exists():
        raise NotRunning(f"not running (no suite recorded in {state})")
    with exclusive(state, _LOCK_FILE):
        suite = RunningSuite.load(state)
        if suite is None:
            raise NotRunning(f"not running (no suite recorded in {state})")
        suite.stop()
        return suite


class _Launch:
    """One start attempt: spawns the processes in order and can undo itself."""

    def __init__(
        self, state: Path, settings: Settings, programs: Programs, ports: Ports, environ: Mapping[str, str]
    ) -> None:
        self.state = state
        self.programs = programs
        self.ports = ports
        self.environ = {**environ, "JAVA": programs.java}
        self.timeout = settings.emulators.startup_timeout_seconds
        self.settings = settings.model_copy(
            update={
                "backend": "gcp",
                "pubsub_emulator_host": f"{HOST}:{ports.pubsub}",
                "firestore_emulator_host": f"{HOST}:{ports.firestore}",
                "storage_emulator_host": f"http://{HOST}:{ports.storage_http}",
                "public_storage_url": f"http://{HOST}:{ports.storage_http}",
            }
        )
        self.popens: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, ProcessId] = {}
        self.firestore_import: Path | None = None

    def run(
        self, topo: topology.Topology, topology_path: Path, notification: tuple[str, str, list[str]] | None
    ) -> RunningSuite:
        began = time.monotonic()
        deadline = began + self.timeout
        p = self.ports
        # The two Java emulators start in parallel; storage waits for Pub/Sub because
        # fake-gcs-server needs the uploads topic to exist before its first event.
        self._spawn("pubsub", [str(self.programs.pubsub), f"--host={HOST}", f"--port={p.pubsub}"])
        firestore_argv = [str(self.programs.firestore), "start", f"--host={HOST}", f"--port={p.firestore}"]
        if self.firestore_import is not None:
            firestore_argv.append(f"--import-data={self.firestore_import}")
        self._spawn("firestore", firestore_argv)
        self._wait("pubsub", lambda: http_ok(f"http://{HOST}:{p.pubsub}/"), deadline)
        suite = RunningSuite(
            state_dir=self.state,
            settings=self.settings,
            ports=p,
            records=[],
            topology_path=topology_path,
            startup_seconds=0.0,
        )
        with _creating_topology():
            topology.apply_messaging(topo, self.settings.names, suite.backends.messaging_admin)
        self._spawn("storage", self._fake_gcs_argv(notification), {"PUBSUB_EMULATOR_HOST": f"{HOST}:{p.pubsub}"})
        self._wait(
            "storage",
            lambda: http_ok(f"http://{HOST}:{p.storage_http}/storage/v1/b") and https_ok(p.storage_https),
            deadline,
        )
        with _creating_topology():
            topology.apply_buckets(topo, self.settings.names, suite.backends.blobs)
        self._wait("firestore", lambda: http_ok(f"http://{HOST}:{p.firestore}/"), deadline)

        suite.records = [
            ProcessRecord(
                name=name,
                process=proc,
                children=tuple(processes.descendants(proc.pid)),
                log=str(self._log(name)),
            )
            for name, proc in self.started.items()
        ]
        suite._popens = list(self.popens.values())
        suite.startup_seconds = time.monotonic() - began
        suite._write_client_config()
        suite._save()
        suite.write_local_env()
        log.info("emulator suite up in %.1f s: %s", suite.startup_seconds, suite.summary())
        return suite

    def abort(self) -> None:
        processes.stop(self.started.values(), grace=5.0)
        for popen in self.popens.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)

    def _fake_gcs_argv(self, notification: tuple[str, str, list[str]] | None) -> list[str]:
        p = self.ports
        argv = [
            str(self.programs.fake_gcs),
            "-scheme", "both",
            "-host", HOST,
            "-port", str(p.storage_https),
            "-port-http", str(p.storage_http),
            "-backend", "memory",
            "-public-host", f"{HOST}:{p.storage_http}",
            "-external-url", f"http://{HOST}:{p.storage_http}",
            "-log-level", "warn",
        ]  # fmt: skip
        if notification is not None:
            bucket, topic, event_types = notification
            unsupported = [t for t in event_types if t not in _FAKE_GCS_EVENTS]
            if unsupported:
                raise SuiteError(f"fake-gcs-server cannot emit {', '.join(unsupported)} notifications")
            argv += [
                "-event.pubsub-project-id", self.settings.project_id,
                "-event.pubsub-topic", topic,
                "-event.bucket", bucket,
                "-event.list", ",".join(_FAKE_GCS_EVENTS[t] for t in event_types),
            ]  # fmt: skip
        return argv

    def _log(self, name: str) -> Path:
        return self.state / LOG_DIR / f"{name}.log"

    def _spawn(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None) -> None:
        log_path = self._log(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # a fresh log per start, so a failure's tail is this run's
        popen = processes.spawn(argv, log_path=log_path, env={**self.environ, **(extra_env or {})})
        self.popens[name] = popen
        ident = processes.identify(popen.pid)
        if ident is None:
            raise StartupFailed(f"{name} exited at once; its log: {log_path}", processes.log_tail(log_path))
        self.started[name] = ident

    def _wait(self, name: str, answers: Callable[[], bool], deadline: float) -> None:
        popen = self.popens[name]
        log_path = self._log(name)
        while True:
            code = popen.poll()
            if code is not None:
                raise StartupFailed(
                    f"{name} exited with code {code} while starting; log: {log_path}", processes.log_tail(log_path)
                )
            if answers():
                return
            if time.monotonic() > deadline:
                raise StartupFailed(
                    f"{name} did not answer within {self.timeout:.0f} s; log: {log_path}",
                    processes.log_tail(log_path),
                )
            time.sleep(0.1)


# --------------------------------------------------------------------------- helpers
def _object_names(http: requests.Session, bucket_url: str, *, versions: bool) -> list[str]:
    names: list[str] = []
    params = {"versions": str(versions).lower()}
    while True:
        listing = http.get(f"{bucket_url}/o", params=params, timeout=10)
        _check(listing, f"list {bucket_url}")
        body = listing.json()
        names += [item["name"] for item in body.get("items", [])]
        if not body.get("nextPageToken"):
            return names
        params["pageToken"] = body["nextPageToken"]


def _check(response: requests.Response, what: str) -> None:
    if not response.ok:
        raise SuiteError(f"could not {what}: HTTP {response.status_code} {response.text[:200]}")


@contextlib.contextmanager
def _creating_topology() -> Iterator[None]:
    try:
        yield
    except AdapterError as exc:
        raise StartupFailed(f"could not create the topology: {exc}") from exc
