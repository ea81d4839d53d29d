"""The reconciler's sweep in a worker's background thread (see `core.reconciler`).

Every worker sweeps, each every `recovery.interval_seconds` with jitter, so recovery keeps going
while any one worker lives, and two workers sweeping at once change nothing twice (each job is
taken over in its own short transaction). The sweep has its own thread: a slow or wedged
document never delays the worker's lease extensions and heartbeats.
"""

from __future__ import annotations

import logging
import random
import threading

from core.reconciler import Reconciler

log = logging.getLogger(__name__)


class RecoveryLoop:
    def __init__(self, reconciler: Reconciler, interval_seconds: float, *, rng: random.Random | None = None) -> None:
        self._reconciler = reconciler
        self._interval = interval_seconds
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-recovery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval * self._rng.uniform(0.5, 1.5)):
            try:
                self._reconciler.sweep()
            except Exception:  # the loop must outlive one bad sweep; the traceback is logged
                log.exception("recovery sweep crashed; the next one runs as scheduled")
            self.sweeps += 1
