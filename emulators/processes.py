"""Start, identify and stop the suite's processes (Linux: /proc and pidfds).

A process is recorded as a `ProcessId` (pid plus its start time in clock ticks), so a later
`python -m emulators down` signals exactly the processes `up` started and never a process
that happens to reuse one of their pids. Signals go through a pidfd opened and then checked
against the recorded start time, and exits are awaited on pidfds (events, with a deadline).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class ProcessId:
    pid: int
    start_ticks: int


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    start_ticks: int


def _stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid pgrp ... starttime ..."; comm may hold spaces and parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return _Stat(state=fields[0], ppid=int(fields[1]), start_ticks=int(fields[19]))


def identify(pid: int) -> ProcessId | None:
    """The pid's identity now, or None when there is no such (living) process."""
    stat = _stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return None
    return ProcessId(pid, stat.start_ticks)


def is_running(proc: ProcessId) -> bool:
    """True while the recorded process runs; a zombie (exited, not yet reaped) counts as gone."""
    return identify(proc.pid) == proc


def descendants(pid: int) -> list[ProcessId]:
    """Every living process below `pid` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat.ppid, []).append(int(entry.name))
    found: list[ProcessId] = []
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop()
        ident = identify(child)
        if ident is not None:
            found.append(ident)
        queue.extend(children.get(child, []))
    return sorted(found)


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


def _open(proc: ProcessId) -> int | None:
    """A pidfd for the recorded process, or None if it is gone (checked after opening, so the
    fd cannot refer to a newer process that reused the pid)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return None
    if not is_running(proc):
        os.close(fd)
        return None
    return fd


def signal_all(procs: Iterable[ProcessId], signum: signal.Signals) -> None:
    for proc in procs:
        fd = _open(proc)
        if fd is None:
            continue
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signum)
        finally:
            os.close(fd)


def wait_gone(procs: Iterable[ProcessId], timeout: float) -> list[ProcessId]:
    """Wait (bounded) until every process has exited; return those still running."""
    fds: dict[int, ProcessId] = {}
    for proc in procs:
        fd = _open(proc)
        if fd is not None:
            fds[fd] = proc
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _event in poller.poll(remaining * 1000):
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


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
