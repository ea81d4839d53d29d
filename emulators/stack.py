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

Ports are free ones unless the settings name them (`PUBSUB_EMULATOR_HOST`, ...,
`GPUPIPE_API_URL`, and the first worker's `worker_health_port`); a restart reuses the previous
ports when they are still free, so a shell that sourced local.env keeps working.

The modules behind it: `stack_startup` (the steps above), `running_stack` (the started stack
and what can be done to it), `services` (the function and worker processes), `persistence`
(what `stop` saves), `processes` (the process supervisor) and `network` (ports and probes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings
from emulators.errors import AlreadyRunning, NotRunning, SuiteError
from emulators.running_stack import DemoUser, Restored, RunningStack
from emulators.running_suite import RunningSuite
from emulators.services import FUNCTION_TARGETS, MODEL_NAME, PUSHED_FUNCTIONS, Service
from emulators.stack_startup import DEMO_USER_NAME, Progress, StackStartup
from emulators.statefiles import PERSIST_DIR, STACK_FILE, STACK_LOCK, exclusive

__all__ = [
    "DEMO_USER_NAME",
    "FUNCTION_TARGETS",
    "MODEL_NAME",
    "PERSIST_DIR",
    "PUSHED_FUNCTIONS",
    "STACK_FILE",
    "DemoUser",
    "Progress",
    "Restored",
    "RunningStack",
    "Service",
    "start",
    "stop",
]

log = logging.getLogger(__name__)


def _quiet(message: str) -> None:
    log.info("%s", message)


def start(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | str | None = None,
    workers: int = 1,
    worker_health_port: int | None = None,
    model_dir: Path | str | None = None,
    worker_env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
    progress: Progress = _quiet,
) -> RunningStack:
    """Start the whole stack; returns once every process answers its health check.

    `environ` is what the processes inherit (the CLI passes its own). `worker_health_port` is
    the first worker's health port (`settings.worker.health_port` when the caller's environment
    set it; None picks a free one or last run's). `model_dir` is where the tiny model is built
    (once; default `<state>/models/tiny-sd`). `worker_env` adds variables for the workers only.
    Raises `AlreadyRunning` when this state directory's stack runs, `StartupFailed` (after
    stopping everything it started) when a process fails."""
    began = time.monotonic()
    deadline = began + timeout
    state = Path(state_dir or settings.emulators.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    with exclusive(state, STACK_LOCK):
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
        startup = StackStartup(
            state,
            settings,
            environ,
            workers=workers,
            worker_health_port=worker_health_port,
            model_dir=model_dir,
            worker_env=worker_env,
            deadline=deadline,
            began=began,
            progress=progress,
        )
        return startup.run()


def stop(state_dir: Path | str, *, persist: bool = True) -> tuple[RunningStack, list[str]]:
    """Stop the stack recorded in `state_dir` (see `RunningStack.stop`); `NotRunning` if none."""
    state = Path(state_dir).resolve()
    with exclusive(state, STACK_LOCK):
        stack = RunningStack.load(state)
        if stack is None:
            raise NotRunning(f"not running (no stack recorded in {state})")
        return stack, stack.stop(persist=persist)
