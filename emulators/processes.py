"""The process supervisor of the suite and the stack: start a server process with its own log,
wait (bounded) until it answers, and stop exactly the processes that were started (psutil).

A process is recorded as a `ProcessId`: its pid plus its start time (`psutil.Process.
create_time()`), so a later `python -m emulators down` signals exactly the processes `up`
started and never a process that happens to reuse one of their pids. psutil checks the pid
again before each signal it sends, and exits are awaited with `psutil.wait_procs` under a
deadline. A zombie (exited, not yet reaped by its parent) counts as gone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from emulators.errors import StartupFailed

# A start time is seconds since the epoch: boot time plus the clock ticks since boot. Linux
# reports the boot time rounded to a second and a clock step can move it, so two readings of
# one process's start time may differ by about a second. A pid is reused only after the
# kernel has handed out every other one, never within seconds of the first process starting.
_SAME_START_SECONDS = 2.0
# How often a bounded wait looks again at processes that are gone but not reaped (zombies).
_WAIT_SLICE_SECONDS = 0.1
_ANSWER_POLL_SECONDS = 0.1


@dataclass(frozen=True, order=True)
class ProcessId:
    pid: int
    started: float
    """`psutil.Process(pid).create_time()`: seconds since the epoch."""


def _handle(proc: ProcessId) -> psutil.Process | None:
    """psutil's handle on the recorded process, or None when it is gone (or a zombie, or its
    pid now belongs to another process)."""
    try:
        handle = psutil.Process(proc.pid)
        if handle.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(handle.create_time() - proc.started) > _SAME_START_SECONDS:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return handle


def identify(pid: int) -> ProcessId | None:
    """The pid's identity now, or None when there is no such (living) process."""
    try:
        handle = psutil.Process(pid)
        if handle.status() == psutil.STATUS_ZOMBIE:
            return None
        return ProcessId(pid, handle.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_running(proc: ProcessId) -> bool:
    """True while the recorded process runs; a zombie (exited, not yet reaped) counts as gone."""
    return _handle(proc) is not None


def descendants(pid: int) -> list[ProcessId]:
    """Every living process below `pid` (children, grandchildren, ...)."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return sorted(p for p in (identify(child.pid) for child in below) if p is not None)


def spawn(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` detached in its own session (so it outlives a CLI and a terminal hang-up),
    with stdout and stderr appended to `log_path` and no stdin."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )


def signal_all(procs: Iterable[ProcessId], signum: signal.Signals) -> None:
    for proc in procs:
        handle = _handle(proc)
        if handle is not None:
            # psutil refuses (NoSuchProcess) when the pid was reused since the handle was made.
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                handle.send_signal(signum)


def wait_gone(procs: Iterable[ProcessId], timeout: float) -> list[ProcessId]:
    """Wait (bounded) until every process has exited; return those still running."""
    waiting = {handle: proc for proc in procs if (handle := _handle(proc)) is not None}
    deadline = time.monotonic() + timeout
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # A zombie that is not our child never "terminates" for psutil: look again each slice.
        _gone, alive = psutil.wait_procs(list(waiting), timeout=min(remaining, _WAIT_SLICE_SECONDS))
        waiting = {h: waiting[h] for h in alive if is_running(waiting[h])}
    return sorted(waiting.values())


def stop(procs: Iterable[ProcessId], *, grace: float = 10.0, kill_wait: float = 5.0) -> list[ProcessId]:
    """SIGTERM the processes (and any descendants they have now), wait up to `grace`, SIGKILL
    what is left and wait up to `kill_wait`. Returns what still runs (normally nothing)."""
    targets = {p for p in procs if is_running(p)}
    for proc in list(targets):
        targets.update(descendants(proc.pid))
    signal_all(targets, signal.SIGTERM)
    survivors = wait_gone(targets, grace)
    if survivors:
        signal_all(survivors, signal.SIGKILL)
        survivors = wait_gone(survivors, kill_wait)
    return survivors


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or f"(empty log at {path})"


# --------------------------------------------------------------------------- supervised processes
@dataclass(frozen=True)
class ProcessRecord:
    """A started process as the state files keep it: name, identity, children, log."""

    name: str
    process: ProcessId
    children: tuple[ProcessId, ...]
    log: str

    def all(self) -> list[ProcessId]:
        return [self.process, *self.children]

    def running(self) -> bool:
        return is_running(self.process)

    def with_children(self) -> ProcessRecord:
        """The record with the process's current children (gunicorn's worker, the emulator's JVM)."""
        return replace(self, children=tuple(descendants(self.process.pid)))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "process": [self.process.pid, self.process.started],
            "children": [[c.pid, c.started] for c in self.children],
            "log": self.log,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=raw["name"],
            process=ProcessId(*raw["process"]),
            children=tuple(ProcessId(*c) for c in raw["children"]),
            log=raw["log"],
        )


class Supervisor:
    """The processes this Python process started, so that whoever stops them reaps them.

    `launch` starts one with a fresh log, `wait_until_answering` waits for a set of them,
    `reap` collects the exit status of those that ended. One thread may launch while another
    kills and reaps (chaos runs)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._popens: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def launch(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, log_name: str | None = None
    ) -> ProcessRecord:
        """Start `argv` detached; its log is `<log_dir>/<log_name or name>.log`, emptied first
        so that a failure's tail is this run's."""
        log_path = self.log_dir / f"{log_name or name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")
        popen = spawn(argv, log_path=log_path, env=env)
        with self._lock:
            self._popens.append(popen)
        ident = identify(popen.pid)
        if ident is None:
            raise StartupFailed(f"{name} exited at once; log: {log_path}", log_tail(log_path))
        return ProcessRecord(name=name, process=ident, children=(), log=str(log_path))

    def wait_until_answering(self, checks: Sequence[tuple[ProcessRecord, Callable[[], bool]]], deadline: float) -> None:
        """Poll each process's `answers` until all say yes. `StartupFailed` (with the end of its
        log) when one exits first or `deadline` (time.monotonic) passes."""
        pending = list(checks)
        while pending:
            for check in list(pending):
                record, answers = check
                code = self._exit_code(record)
                if code is not None or not record.running():
                    how = "exited" if code is None else f"exited with code {code}"
                    raise StartupFailed(
                        f"{record.name} {how} while starting; log: {record.log}", log_tail(Path(record.log))
                    )
                if answers():
                    pending.remove(check)
            if not pending:
                return
            if time.monotonic() > deadline:
                first = pending[0][0]
                raise StartupFailed(
                    f"{', '.join(r.name for r, _ in pending)} did not answer in time; log: {first.log}",
                    log_tail(Path(first.log)),
                )
            time.sleep(_ANSWER_POLL_SECONDS)

    def reap(self, pids: Iterable[int] | None = None) -> None:
        """Collect the exit status of stopped children (all, or those with `pids`), so none
        lingers as a zombie."""
        wanted = None if pids is None else set(pids)
        with self._lock:
            done = [p for p in self._popens if wanted is None or p.pid in wanted]
            self._popens = [p for p in self._popens if p not in done]
        for popen in done:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)

    def _exit_code(self, record: ProcessRecord) -> int | None:
        with self._lock:
            popen = next((p for p in self._popens if p.pid == record.process.pid), None)
        return None if popen is None else popen.poll()
