"""Starting the emulator suite: the Pub/Sub and Firestore emulators and fake-gcs-server, each
waited for until it answers, with the topology created as soon as its emulator serves."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.ports import AdapterError
from core.settings import Settings
from emulators import processes, topology
from emulators.errors import StartupFailed, SuiteError
from emulators.network import HOST, Ports, http_ok, https_ok
from emulators.processes import ProcessRecord, Supervisor
from emulators.programs import Programs
from emulators.running_suite import RunningSuite
from emulators.statefiles import LOG_DIR

log = logging.getLogger(__name__)

_FAKE_GCS_EVENTS = {
    "OBJECT_FINALIZE": "finalize",
    "OBJECT_DELETE": "delete",
    "OBJECT_METADATA_UPDATE": "metadataUpdate",
}


class SuiteLaunch:
    """One start attempt: spawns the processes in order and can undo itself (`abort`)."""

    def __init__(
        self,
        state: Path,
        settings: Settings,
        programs: Programs,
        ports: Ports,
        environ: dict[str, str],
        *,
        firestore_import: Path | None = None,
    ) -> None:
        self.state = state
        self.programs = programs
        self.ports = ports
        self.environ = {**environ, "JAVA": programs.java}
        self.timeout = settings.emulators.startup_timeout_seconds
        self.firestore_import = firestore_import
        self.settings = settings.model_copy(
            update={
                "backend": "gcp",
                "pubsub_emulator_host": f"{HOST}:{ports.pubsub}",
                "firestore_emulator_host": f"{HOST}:{ports.firestore}",
                "storage_emulator_host": f"http://{HOST}:{ports.storage_http}",
                "public_storage_url": f"http://{HOST}:{ports.storage_http}",
            }
        )
        self.supervisor = Supervisor(state / LOG_DIR)
        self.started: dict[str, ProcessRecord] = {}

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
            supervisor=self.supervisor,
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

        suite.records = [record.with_children() for record in self.started.values()]
        suite.startup_seconds = time.monotonic() - began
        suite.write_client_config()
        suite.save()
        suite.write_local_env()
        log.info("emulator suite up in %.1f s: %s", suite.startup_seconds, suite.summary())
        return suite

    def abort(self) -> None:
        processes.stop([r.process for r in self.started.values()], grace=5.0)
        self.supervisor.reap()

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

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.started[name] = self.supervisor.launch(name, argv, {**self.environ, **(extra_env or {})})

    def _wait(self, name: str, answers: Callable[[], bool], deadline: float) -> None:
        self.supervisor.wait_until_answering([(self.started[name], answers)], deadline)


@contextlib.contextmanager
def _creating_topology() -> Iterator[None]:
    try:
        yield
    except AdapterError as exc:
        raise StartupFailed(f"could not create the topology: {exc}") from exc
