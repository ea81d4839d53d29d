"""`python -m bench.chaos [--jobs N ...] [--results DIR]`: the large chaos run (`make chaos`).

Starts its own local stack (a temporary state directory, free ports, `--workers` workers),
runs `bench.chaos.driver` on it, prints the figures and appends a row to `<results>/chaos.csv`.
Exits 1 when the delivery contract did not hold (a job not terminal within the bound, a
duplicate or rewritten output, usage records that differ from terminal jobs, a counter not 0).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bench.chaos.driver import ChaosConfig, ChaosResult, run
from core.settings import Settings
from emulators import stack as local_stack

CHAOS_WORKER_ENV = {"GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS": "3"}


_FOREIGN = (
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "BOTO_CONFIG",
)


def own_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the stack's processes inherit: `environ` minus anything (a sourced local.env) that
    would point them at another stack."""
    return {k: v for k, v in environ.items() if not k.startswith(("GPUPIPE_", "CLOUDSDK_")) and k not in _FOREIGN}


def contract_holds(result: ChaosResult) -> bool:
    return (
        result.stranded == 0
        and result.percent_terminal == 100.0
        and result.duplicate_outputs == 0
        and result.rewritten_outputs == 0
        and result.usage_mismatches == 0
        and result.counters_not_zero == 0
        and result.batch_completed
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker-kills", type=int, default=50)
    parser.add_argument("--kill-interval", type=float, default=10.0)
    parser.add_argument("--api-kills", type=int, default=5)
    parser.add_argument("--upload-lines", type=int, default=50)
    parser.add_argument("--upload-kills", type=int, default=1)
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = ChaosConfig(
        jobs=args.jobs,
        users=args.users,
        worker_kills=args.worker_kills,
        kill_interval=args.kill_interval,
        api_kills=args.api_kills,
        upload_lines=args.upload_lines,
        upload_kills=args.upload_kills,
    )
    environ = own_environment(os.environ)
    with tempfile.TemporaryDirectory(prefix="gpupipe-chaos-") as state:
        stack = local_stack.start(
            Settings.from_env({"GPUPIPE_ENV": "local"}),
            environ=environ,
            state_dir=state,
            workers=args.workers,
            model_dir=Path(".gpupipe/models/tiny-sd").resolve(),
            worker_env=CHAOS_WORKER_ENV,
        )
        try:
            result = run(stack, config, environ)
        finally:
            stack.stop(persist=False)
    row = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "workers": args.workers,
        **result.row(),
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "chaos.csv"
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    for key, value in row.items():
        print(f"{key:>36}: {value}")
    print(f"written to {path}")
    return 0 if contract_holds(result) else 1


if __name__ == "__main__":
    sys.exit(main())
