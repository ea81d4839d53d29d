"""`python -m gpu_worker [--exit-when-idle SECONDS] [--worker-id ID]`: the GPU worker process.

Start-up: settings from the environment, logging, health server (503 until ready), model
resolved (registry download, local folder or hub id), loaded and warmed up, then the pull
starts. SIGTERM or SIGINT stops pulling, finishes or gives back what is in flight within
`GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS`, and exits 0. `--exit-when-idle` exits 0 after that
many seconds without work (Cloud Run jobs).

Exit codes: 0 stopped cleanly; 2 bad settings or no usable model; 1 anything else.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import argparse  # noqa: E402 (the clock above measures start-up from here)
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

from core.settings import Environment, Settings, SettingsError  # noqa: E402

log = logging.getLogger("gpu_worker")

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="exit 0 after this long without work")
    parser.add_argument("--worker-id", help="name in logs and on claimed jobs (default: host-pid)")
    args = parser.parse_args(argv)

    environ = dict(os.environ)
    if args.exit_when_idle is not None:
        environ["GPUPIPE_WORKER_EXIT_WHEN_IDLE_SECONDS"] = str(args.exit_when_idle)
    try:
        settings = Settings.from_env(environ)
    except SettingsError as exc:
        print(f"gpu_worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.env in (Environment.LOCAL, Environment.TEST):
        # Locally nothing may come from a model hub; set before diffusers is imported.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from core.logs import configure_logging

    configure_logging(settings)
    process = _Process(settings, args.worker_id or f"{socket.gethostname()}-{os.getpid()}")
    signal.signal(signal.SIGTERM, process.on_signal)
    signal.signal(signal.SIGINT, process.on_signal)
    try:
        return process.serve()
    except Exception as exc:
        from gpu_worker.errors import ConfigurationError

        if isinstance(exc, ConfigurationError):
            log.error("cannot start: %s", exc, extra={"worker_id": process.worker_id})
            return EXIT_CONFIG
        log.exception("worker crashed", extra={"worker_id": process.worker_id})
        return 1


class _Process:
    """The worker process: health server, model, consumer, and the signals that stop them."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.stop_requested = False
        self.worker: Any = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags here: the worker's own threads do the stopping.
        self.stop_requested = True
        if self.worker is not None:
            self.worker.request_stop(signal.Signals(signum).name)

    def status(self) -> dict[str, Any]:
        if self.worker is not None:
            return dict(self.worker.status())
        return {"status": "starting", "worker_id": self.worker_id}

    def serve(self) -> int:
        settings = self.settings
        imports_started = time.perf_counter()
        import torch  # noqa: F401 (timed: the bulk of start-up)
        from diffusers import StableDiffusionPipeline  # noqa: F401 (its lazy import is a second bulk)

        from adapters.bootstrap import bootstrap
        from gpu_worker.consumer import Worker
        from gpu_worker.health import HealthServer
        from gpu_worker.metrics import WorkerMetrics
        from gpu_worker.model_store import resolve_model
        from gpu_worker.runner import DiffusersRunner

        imports_seconds = time.perf_counter() - imports_started
        app = bootstrap(settings)
        metrics = WorkerMetrics()
        health = HealthServer(settings.worker.health_host, settings.worker.health_port, metrics, self.status)
        health.start()
        try:
            resolve_started = time.perf_counter()
            source = resolve_model(settings, app.documents, app.blobs)
            resolve_seconds = time.perf_counter() - resolve_started
            runner = DiffusersRunner.from_settings(
                source.location,
                model_name=source.name,
                model_version=source.version,
                worker=settings.worker,
                warm_up_size=settings.request_limits.default_size,
                local_files_only=source.local,
            )
            warm_up_seconds = runner.warm_up()
            worker = Worker(
                settings,
                documents=app.documents,
                blobs=app.blobs,
                subscriber=app.subscriber,
                runner=runner,
                worker_id=self.worker_id,
                metrics=metrics,
                ledger=app.ledger,
                reconciler=app.reconciler,
            )
            if self.stop_requested:
                log.info("stopped before pulling", extra={"worker_id": self.worker_id})
                return 0
            startup = {
                "imports_seconds": round(imports_seconds, 3),
                "model_resolve_seconds": round(resolve_seconds, 3),
                "model_load_seconds": round(runner.load_seconds, 3),
                "warm_up_seconds": round(warm_up_seconds, 3),
            }

            pull_started = time.perf_counter()

            def ready() -> None:
                now = time.perf_counter()
                startup["pull_start_seconds"] = round(now - pull_started, 3)
                startup["to_ready_seconds"] = round(now - _STARTED, 3)
                log.info(
                    "worker ready: model %s version %s on %s; start-up %s",
                    runner.model_name,
                    runner.model_version,
                    runner.device,
                    json.dumps(startup, sort_keys=True),
                    extra={"worker_id": self.worker_id},
                )

            self.worker = worker
            if self.stop_requested:
                worker.request_stop("signal")
            worker.run(on_ready=ready)
            return 0
        finally:
            health.stop()


if __name__ == "__main__":
    sys.exit(main())
