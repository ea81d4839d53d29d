"""A started emulator suite: its record (suite.json), the environment its clients need
(local.env, boto.cfg, a private gcloud config), its health, `reset` and `stop`.

`RunningSuite.load(state_dir)` finds a suite that another process started (the CLI's `down`
and `status`). `stop()` ends exactly the recorded processes; `reset()` empties every emulator
and re-creates the topology (the test fixtures call it between tests).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import shlex
import shutil
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from adapters.bootstrap import Backends, bootstrap
from core.settings import ENV_VARS, Settings
from emulators import processes, topology
from emulators.errors import StopFailed, SuiteError
from emulators.network import HOST, Ports, http_ok, https_ok
from emulators.processes import ProcessId, ProcessRecord, Supervisor
from emulators.statefiles import BOTO_FILE, ENV_FILE, GCLOUD_CONFIG_DIR, SUITE_FILE, read_record, write_atomically

_STATE_VERSION = 2  # 2: process start times are psutil's create_time (seconds), not clock ticks


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
        supervisor: Supervisor | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.settings = settings
        self.ports = ports
        self.records = records
        self.topology_path = topology_path
        self.startup_seconds = startup_seconds
        # What started the processes, when it was this Python process (not for a loaded suite).
        self._supervisor = supervisor

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, state_dir: Path) -> RunningSuite | None:
        """The suite recorded in `state_dir`, whether or not its processes still run."""
        path = Path(state_dir).resolve() / SUITE_FILE
        raw = read_record(path, version=_STATE_VERSION, what="suite", hint="check no emulator runs, then remove it")
        if raw is None:
            return None
        records = [ProcessRecord.from_json(r) for r in raw["processes"]]
        return cls(
            state_dir=path.parent,
            settings=Settings.from_env(raw["env"]),
            ports=Ports(**raw["ports"]),
            records=records,
            topology_path=Path(raw["topology"]),
            startup_seconds=raw["startup_seconds"],
        )

    def save(self) -> None:
        state = {
            "version": _STATE_VERSION,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(self.startup_seconds, 3),
            "ports": asdict(self.ports),
            "processes": [r.to_json() for r in self.records],
            "topology": str(self.topology_path),
            "env": self.env(),
        }
        write_atomically(self.state_dir / SUITE_FILE, json.dumps(state, indent=2) + "\n")

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

    def write_client_config(self) -> None:
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
        for name in (SUITE_FILE, ENV_FILE, BOTO_FILE):
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
        if self._supervisor is not None:
            self._supervisor.reap()
        if survivors:
            pids = ", ".join(str(p.pid) for p in survivors)
            raise StopFailed(f"processes still running after SIGKILL: {pids}")
        self._forget()


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
