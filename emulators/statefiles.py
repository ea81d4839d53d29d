"""The state directory's files (`.gpupipe/`): their names, atomic writes, tolerant reads and the
lock that serialises `python -m emulators` commands working on one directory.

    suite.json   the emulator suite: pids (with start times) of every process, ports, env
    stack.json   the rest of the stack: functions, workers, the demo user, the model version
    local.env    `export` lines for a shell (`source .gpupipe/local.env`)
    logs/        one log per process
    gcloud/      a throwaway CLOUDSDK_CONFIG, so `gcloud storage cp` never touches the user's
    boto.cfg     BOTO_CONFIG for gsutil (HTTPS port, certificate checks off)
    persist/     what `down` saved for the next `up` (see `emulators.persistence`)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulators.errors import SuiteError

SUITE_FILE = "suite.json"
STACK_FILE = "stack.json"
ENV_FILE = "local.env"
BOTO_FILE = "boto.cfg"
GCLOUD_CONFIG_DIR = "gcloud"
LOG_DIR = "logs"
PERSIST_DIR = "persist"
SUITE_LOCK = "suite.lock"
STACK_LOCK = "stack.lock"


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path, *, expect: type = dict) -> Any:
    """The file's JSON value if it is there, readable and an `expect`; None otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, expect) else None


def read_record(path: Path, *, version: int, what: str, hint: str) -> dict[str, Any] | None:
    """A state record (suite.json, stack.json) written by this version; None when there is none.
    An unreadable record or one from another version raises `SuiteError` with `hint`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SuiteError(f"unreadable {what} state {path}: {exc}; {hint}") from None
    if not isinstance(raw, dict) or raw.get("version") != version:
        raise SuiteError(f"{what} state {path} is from another version; stop its processes and remove it")
    return raw


@contextlib.contextmanager
def exclusive(state: Path, lock_name: str) -> Iterator[None]:
    """Serialise up/down on one state directory (two `make up` at once would race)."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / lock_name).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SuiteError(f"another `python -m emulators` is working on {state}; try again when it ends") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
