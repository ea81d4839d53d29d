"""The local emulator suite: the official Pub/Sub and Firestore emulators plus fake-gcs-server.

`start(settings, environ=...)` launches the three on 127.0.0.1, waits until each answers,
creates topology.yaml's resources through the GCP adapters, and records everything under the
state directory (`.gpupipe/` by default; `emulators.statefiles` lists its files):

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

import logging
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings
from emulators import topology
from emulators.errors import AlreadyRunning, NotRunning, SuiteError
from emulators.network import emulator_ports
from emulators.processes import ProcessRecord
from emulators.programs import find_programs
from emulators.running_suite import RunningSuite
from emulators.statefiles import BOTO_FILE, ENV_FILE, GCLOUD_CONFIG_DIR, LOG_DIR, SUITE_FILE, SUITE_LOCK, exclusive
from emulators.suite_launch import SuiteLaunch

__all__ = [
    "BOTO_FILE",
    "ENV_FILE",
    "GCLOUD_CONFIG_DIR",
    "LOG_DIR",
    "STATE_FILE",
    "ProcessRecord",
    "RunningSuite",
    "start",
    "stop",
]

log = logging.getLogger(__name__)

STATE_FILE = SUITE_FILE


def start(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | str | None = None,
    topology_path: Path = topology.DEFAULT_PATH,
    firestore_import: Path | None = None,
) -> RunningSuite:
    """Start the suite, create the topology and write local.env; returns once all three answer.

    `environ` is the environment the emulator processes inherit (the CLI passes its own).
    `firestore_import` is a Firestore emulator export (`*.overall_export_metadata`) to load at
    start (the whole-stack runner keeps Firestore across restarts with it).
    Raises `AlreadyRunning` when this state directory's suite still runs, and the other
    `SuiteError`s for missing programs, taken ports and processes that do not come up; on any
    failure every process started so far is stopped again."""
    state = Path(state_dir or settings.emulators.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    with exclusive(state, SUITE_LOCK):
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
        programs = find_programs(settings, environ)
        launch = SuiteLaunch(
            state, settings, programs, emulator_ports(settings), dict(environ), firestore_import=firestore_import
        )
        try:
            return launch.run(topo, topology_path, notification)
        except BaseException:
            launch.abort()
            raise


def stop(state_dir: Path | str) -> RunningSuite:
    """Stop the suite recorded in `state_dir`; `NotRunning` when there is none."""
    state = Path(state_dir).resolve()
    if not (state / SUITE_FILE).exists():
        raise NotRunning(f"not running (no suite recorded in {state})")
    with exclusive(state, SUITE_LOCK):
        suite = RunningSuite.load(state)
        if suite is None:
            raise NotRunning(f"not running (no suite recorded in {state})")
        suite.stop()
        return suite
