"""Benchmark one functions-framework `api` process against the local emulators.

Starts a private emulator suite, creates a user with limits high enough not to throttle,
starts `functions-framework --target api`, drives it with Locust (headless) and writes
`results/api_submit_stats.csv` (Locust's own CSV), `results/api_submit_summary.csv` (p50, p99,
throughput) and `results/api_cold_start.csv` (time to `import functions.main` in a fresh
interpreter). Prints a table.

    .venv/bin/python -m bench.api.run [--users 8] [--accounts 1] [--seconds 30] [--imports 5]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from core.accounts import Accounts
from core.settings import Settings
from emulators import suite

ROOT = Path(__file__).resolve().parents[2]


def cold_start_seconds(runs: int) -> list[float]:
    """Wall time of `import functions.main` in a fresh interpreter (what a cold instance pays)."""
    code = "import time; t = time.perf_counter(); import functions.main; print(time.perf_counter() - t)"
    out = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
        )
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the api did not answer on {url} within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users")
    parser.add_argument("--seconds", type=int, default=30, help="load duration")
    parser.add_argument("--accounts", type=int, default=1, help="accounts the users share (1: all on one)")
    parser.add_argument("--imports", type=int, default=5, help="cold-start import measurements")
    parser.add_argument("--results", default=str(ROOT / "results"))
    args = parser.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)

    imports = cold_start_seconds(args.imports)
    with open(results / "api_cold_start.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "import_functions_main_seconds"])
        writer.writerows(enumerate(imports, start=1))

    settings = Settings.from_env({"GPUPIPE_ENV": "local"})
    with tempfile.TemporaryDirectory(prefix="gpupipe-bench-") as state:
        running = suite.start(settings, environ=os.environ, state_dir=state)
        api = None
        try:
            accounts = Accounts(running.backends.documents, running.settings)
            keys = []
            for i in range(args.accounts):
                user_id = f"bench-{i}"
                accounts.create_user(user_id, user_id=user_id)
                accounts.set_limits(user_id, max_concurrent_jobs=10**9, daily_images=10**9, requests_per_minute=10**9)
                keys.append(accounts.create_key(user_id).plain)
            port = free_port()
            env = {**os.environ, **running.env(), "GPUPIPE_LOG_LEVEL": "WARNING"}
            api = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("functions-framework")),
                    "--target",
                    "api",
                    "--source",
                    str(ROOT / "functions" / "main.py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(results / "api_bench_server.log", "w"),
            )
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("locust")),
                    "-f",
                    str(ROOT / "bench/api/locustfile.py"),
                    "--headless",
                    "-u",
                    str(args.users),
                    "-r",
                    str(args.users),
                    "-t",
                    f"{args.seconds}s",
                    "--host",
                    url,
                    "--csv",
                    str(results / "api_submit"),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                env={**os.environ, "GPUPIPE_API_KEYS": ",".join(keys)},
                check=False,
                timeout=args.seconds + 120,
            )
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)
            running.stop()

    with open(results / "api_submit_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "POST /v1/jobs")
    summary = {
        "users": args.users,
        "accounts": args.accounts,
        "seconds": args.seconds,
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "throughput_rps": round(float(row["Requests/s"]), 2),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
        "cold_import_median_s": round(statistics.median(imports), 3),
    }
    with open(results / "api_submit_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary))
        writer.writeheader()
        writer.writerow(summary)
    width = max(len(k) for k in summary)
    for key_name, value in summary.items():
        print(f"{key_name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
