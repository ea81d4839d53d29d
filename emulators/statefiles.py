"""The state directory's files (`.gpupipe/`): atomic writes and the lock that serialises
`python -m emulators` commands working on one directory."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from emulators.errors import SuiteError


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
