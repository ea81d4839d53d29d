"""`python -m emulators up|down|status [--json]`: the local stack from a shell (`make up/down/status`).

`up` starts the whole stack detached (emulator suite, the api/on_upload/on_dead_letter
functions, a worker with the tiny model, a demo user), writes .gpupipe/local.env and returns
once everything answers; `down` saves Firestore and the outputs bucket, then stops every
process `up` started; `status` shows what runs. `up --emulators-only` starts just the emulator
suite (what the integration tests use).

Exit codes: 0 done (also `up` when the stack is already up and `down` when nothing runs:
both say so); 1 an error (one line on stderr, no traceback, plus the end of the failing
process's log); 3 `status` found nothing running; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.settings import Settings, SettingsError
from emulators import stack, suite
from emulators.errors import AlreadyRunning, NotRunning, StartupFailed, SuiteError

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", help="where the suite keeps its state (default: GPUPIPE_STATE_DIR or .gpupipe)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the whole local stack detached; write local.env")
    up.add_argument("--workers", type=int, default=1, help="GPU workers to start (default 1)")
    up.add_argument("--emulators-only", action="store_true", help="start only the emulator suite")
    down = commands.add_parser("down", help="stop every process `up` started")
    down.add_argument("--no-save", action="store_true", help="do not keep Firestore and outputs for the next `up`")
    status = commands.add_parser("status", help="show what runs (exit 3 when nothing does)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    env = os.environ if environ is None else environ
    try:
        settings = Settings.from_env(env)
        state_dir = Path(args.state_dir or settings.emulators.state_dir)
        if args.command == "up":
            if args.emulators_only:
                return _up(settings, state_dir, env)
            # The settings always hold a health port (a default); the stack honours it only when set.
            health_port = settings.worker.health_port if env.get("GPUPIPE_WORKER_HEALTH_PORT") else None
            return _up_stack(settings, state_dir, env, workers=args.workers, worker_health_port=health_port)
        if args.command == "down":
            if stack.RunningStack.load(state_dir) is not None:
                return _down_stack(state_dir, persist=not args.no_save)
            return _down(state_dir)
        return _status(state_dir, as_json=args.json)
    except (SuiteError, SettingsError) as exc:
        print(f"emulators: {exc}", file=sys.stderr)
        if isinstance(exc, StartupFailed) and exc.log_tail:
            print(f"--- end of its log ---\n{exc.log_tail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("emulators: interrupted; stopped whatever had started", file=sys.stderr)
        return EXIT_INTERRUPTED


def _up(settings: Settings, state_dir: Path, environ: Mapping[str, str]) -> int:
    # A SIGTERM while starting must also stop what has started (as Ctrl-C does).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        running = suite.start(settings, environ=environ, state_dir=state_dir)
    except AlreadyRunning as exc:
        print(f"emulators: {exc}")
        return 0
    print(f"emulator suite up in {running.startup_seconds:.1f} s: {running.summary()}")
    print(f"environment: source {_relative(running.state_dir / suite.ENV_FILE)}")
    return 0


def _up_stack(
    settings: Settings, state_dir: Path, environ: Mapping[str, str], *, workers: int, worker_health_port: int | None
) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        running = stack.start(
            settings,
            environ=environ,
            state_dir=state_dir,
            workers=workers,
            worker_health_port=worker_health_port,
            progress=_say,
        )
    except AlreadyRunning as exc:
        print(f"stack: {exc}")
        return 0
    env_file = _relative(running.state_dir / suite.ENV_FILE)
    print(f"stack up in {running.startup_seconds:.1f} s ({running.restored.describe()})")
    print(f"  API       {running.api_url}")
    print(f"  user      {running.user.user_id}  (key in {env_file} as GPUPIPE_API_KEY)")
    print(f"  emulators {running.suite.summary()}")
    print(f"  logs      {_relative(running.state_dir / suite.LOG_DIR)}/")
    print(f"environment: source {env_file}     stop: make down")
    return 0


def _down_stack(state_dir: Path, *, persist: bool) -> int:
    stopped, warnings = stack.stop(state_dir, persist=persist)
    for warning in warnings:
        print(f"stack: warning: {warning}", file=sys.stderr)
    count = len(stopped.services) + len(stopped.suite.processes())
    saved = f"; Firestore and outputs saved in {_relative(stopped.state_dir / stack.PERSIST_DIR)}" if persist else ""
    print(f"stack stopped ({count} processes){saved if not warnings else ''}")
    return 0


def _say(message: str) -> None:
    print(f"  .. {message}", flush=True)


def _down(state_dir: Path) -> int:
    try:
        before = suite.RunningSuite.load(state_dir)
        was_running = before is not None and before.is_running()
        stopped = suite.stop(state_dir)
    except NotRunning as exc:
        print(f"emulators: {exc}")
        return 0
    if was_running:
        print(f"emulator suite stopped ({len(stopped.processes())} processes)")
    else:
        print(f"emulator suite was not fully running; stopped what was left and cleared {stopped.state_dir}")
    return 0


def _status(state_dir: Path, *, as_json: bool) -> int:
    whole = stack.RunningStack.load(state_dir)
    if whole is not None:
        return _stack_status(whole, as_json=as_json)
    running = suite.RunningSuite.load(state_dir)
    if running is None:
        if as_json:
            print(json.dumps({"running": False, "state_dir": str(state_dir.resolve())}))
        else:
            print(f"not running (no suite recorded in {state_dir.resolve()})")
        return EXIT_NOT_RUNNING
    description = running.describe()
    if as_json:
        print(json.dumps(description, indent=2))
    else:
        state = "up" if description["running"] else "partly down"
        print(f"emulator suite {state}: {running.summary()}")
        for proc in description["processes"]:
            children = ", ".join(f"{c['pid']}{'' if c['running'] else ' (gone)'}" for c in proc["children"])
            print(
                f"  {proc['name']:<10} pid {proc['pid']}{'' if proc['running'] else ' (gone)'}"
                f"{f'  children {children}' if children else ''}"
                f"  answering: {'yes' if description['answering'][proc['name']] else 'no'}"
            )
    return 0 if description["running"] else EXIT_ERROR


def _stack_status(whole: stack.RunningStack, *, as_json: bool) -> int:
    description = whole.describe()
    if as_json:
        print(json.dumps(description, indent=2))
        return 0 if description["running"] else EXIT_ERROR
    print(f"stack {'up' if description['running'] else 'partly down'}: {whole.summary()}")
    print(f"  emulators: {whole.suite.summary()}")
    rows = [
        (p["name"], p["pid"], p["running"], description["answering"][p["name"]], "") for p in description["processes"]
    ] + [(s["name"], s["pid"], s["running"], s["answering"], s["url"]) for s in description["services"]]
    for name, pid, alive, answering, url in rows:
        print(
            f"  {name:<15} pid {pid:<8}{'' if alive else ' (gone)'} answering: {'yes' if answering else 'no'}"
            f"{'  ' + url if url else ''}"
        )
    return 0 if description["running"] else EXIT_ERROR


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
