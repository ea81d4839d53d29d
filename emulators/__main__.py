"""`python -m emulators up|down|status [--json]`: the local emulator suite from a shell.

Exit codes: 0 done (also `up` when the suite is already up and `down` when nothing runs:
both say so); 1 an error (one line on stderr, no traceback); 3 `status` found no suite
running; 130 interrupted.
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
from emulators import suite
from emulators.errors import AlreadyRunning, NotRunning, StartupFailed, SuiteError

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", help="where the suite keeps its state (default: GPUPIPE_STATE_DIR or .gpupipe)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the emulators, create the topology, write local.env")
    commands.add_parser("down", help="stop every process `up` started")
    status = commands.add_parser("status", help="show what runs (exit 3 when nothing does)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        state_dir = Path(args.state_dir or settings.emulators.state_dir)
        if args.command == "up":
            return _up(settings, state_dir, os.environ if environ is None else environ)
        if args.command == "down":
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
