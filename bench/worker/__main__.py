"""`python -m bench.worker [--results DIR] [--skip-cold-start] [--jobs N]`: the worker's benchmarks.

Starts its own emulator suite (free ports, a temporary state directory), builds the tiny model
and registers it, then measures:
1. throughput and pipeline efficiency at max batch sizes 1, 2, 4, 8 (one CPU thread for torch);
2. cold start of `python -m gpu_worker` (first with an empty model cache, then cached);
3. the SD 1.5 GPU benchmark, where CUDA exists (skipped with a message elsewhere).
Each writes a CSV under the results folder and a table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    # Nothing comes from a model hub here; set before diffusers is imported (the entry point's job).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="folder for the CSV files (default results/)")
    parser.add_argument("--jobs", type=int, default=32, help="jobs per batch-size run (at least 3 batches)")
    parser.add_argument("--cold-starts", type=int, default=3, help="cold-start runs (the first with no cache)")
    args = parser.parse_args(argv)
    results = Path(args.results)

    import torch

    from adapters.bootstrap import bootstrap
    from bench.worker import cold_start, gpu_sd15, throughput
    from core.model_registry import ModelRegistry
    from core.settings import Settings
    from emulators import suite
    from gpu_worker.runner import DiffusersRunner
    from gpu_worker.tiny_model import build

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpupipe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print("starting the emulator suite ...", file=sys.stderr)
        running = suite.start(Settings.from_env({"GPUPIPE_ENV": "local"}), environ=os.environ, state_dir=tmp / "suite")
        try:
            settings = running.settings
            backends = bootstrap(settings)
            model_dir = build(tmp / "tiny-sd")
            registry = ModelRegistry(backends.documents, backends.blobs, settings.names.models_bucket)
            version = registry.register("tiny-sd", model_dir, promote=True, exist_ok=True)
            runner = DiffusersRunner(
                str(model_dir), model_name="tiny-sd", model_version=version.version, device="cpu", dtype="float32"
            )
            runner.warm_up()

            rows = []
            for batch_size in (1, 2, 4, 8):
                jobs = max(args.jobs, 3 * batch_size)
                print(f"throughput at batch size {batch_size} ({jobs} jobs) ...", file=sys.stderr)
                rows.append(throughput.measure(settings, backends, runner, batch_size, jobs).as_dict())
            write_csv(results / "worker_throughput.csv", rows)
            print(
                table(
                    "worker throughput: tiny model, 64x64, 20 steps, guided, CPU fp32, 1 torch thread, emulators",
                    rows,
                    [
                        "batch_size",
                        "images",
                        "batches",
                        "images_per_second",
                        "model_seconds_per_image",
                        "wall_seconds_per_image",
                        "efficiency",
                    ],
                )
            )

            cold_rows = []
            cache = tmp / "cold-cache"
            for run in range(args.cold_starts):
                print(f"cold start {run + 1} of {args.cold_starts} ...", file=sys.stderr)
                cold_rows.append(cold_start.measure(running.env(), cache, tmp, run))
            write_csv(results / "worker_cold_start.csv", cold_rows)
            print()
            print(
                table(
                    "worker cold start: process start -> /healthz 200 (seconds)",
                    cold_rows,
                    [
                        "run",
                        "model_cached",
                        "wall_to_ready_seconds",
                        "imports_seconds",
                        "model_resolve_seconds",
                        "model_load_seconds",
                        "warm_up_seconds",
                        "pull_start_seconds",
                        "other_seconds",
                    ],
                )
            )
            cached = [r["wall_to_ready_seconds"] for r in cold_rows if r["model_cached"]]
            if cached:
                print(f"median cached cold start: {statistics.median(cached):.2f} s")
        finally:
            running.stop()

    print()
    gpu_rows = gpu_sd15.run()
    if gpu_rows:
        write_csv(results / "worker_gpu_sd15.csv", gpu_rows)
        print(
            table(
                "SD 1.5 architecture, random weights, 512x512, 25 steps, guided",
                gpu_rows,
                [
                    "device",
                    "implementation",
                    "dtype",
                    "batch_size",
                    "images_per_second",
                    "achieved_tflops",
                    "fraction_of_compute_bound",
                ],
            )
        )
    else:
        write_csv(results / "worker_gpu_sd15.csv", [{"status": gpu_sd15.SKIP_MESSAGE}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
