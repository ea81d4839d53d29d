"""Worker cold start: `python -m gpu_worker` process start -> /healthz answers 200 (pulling).

The worker's own "worker ready" log line splits its part: imports (torch, diffusers),
model resolve (backend clients, registry lookup, download and verify into the cache when not
cached), model load (`from_pretrained`), warm-up and pull start (the streaming pull opened).
What is left of the wall time (`other`) is the interpreter, settings and logging start-up and
the health poll's resolution (20 ms).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

_READY = re.compile(r"worker ready: .*start-up (\{.*\})")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(json.loads(response.read()).get("status") == "ok")
    except OSError:
        return False


def measure(env: dict[str, str], cache_dir: Path, log_dir: Path, run: int) -> dict[str, Any]:
    port = _free_port()
    log_path = log_dir / f"cold-start-{run}.log"
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        **env,
        "GPUPIPE_LOG_FORMAT": "text",
        "GPUPIPE_WORKER_HEALTH_PORT": str(port),
        "GPUPIPE_MODEL_CACHE_DIR": str(cache_dir),
        "OMP_NUM_THREADS": "1",
    }
    cached = any(cache_dir.glob("*/*/manifest.json"))
    with log_path.open("wb") as log:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "gpu_worker", "--worker-id", f"cold-{run}"],
            cwd=REPO,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not become ready; see {log_path}")
            time.sleep(0.02)
        wall = time.perf_counter() - began
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    match = _READY.search(log_path.read_text())
    if match is None:
        raise RuntimeError(f"no 'worker ready' line in {log_path}")
    split = json.loads(match.group(1))
    return {
        "run": run,
        "model_cached": cached,
        "wall_to_ready_seconds": round(wall, 3),
        **split,
        "other_seconds": round(
            wall
            - split["imports_seconds"]
            - split["model_resolve_seconds"]
            - split["model_load_seconds"]
            - split["warm_up_seconds"]
            - split["pull_start_seconds"],
            3,
        ),
    }
