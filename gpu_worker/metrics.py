"""The worker's Prometheus metrics, in a registry of its own (one per worker object, so tests
can run several workers in one process)."""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class WorkerMetrics:
    def __init__(self, *, throughput_window_seconds: float = 60.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_wait = Histogram(
            "gpupipe_worker_queue_wait_seconds",
            "time from a job's creation to the start of its batch on the GPU",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "gpupipe_worker_batch_images",
            "images per pipeline call",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "gpupipe_worker_model_seconds", "seconds per pipeline call", buckets=_SECONDS, registry=self.registry
        )
        self.images = Counter("gpupipe_worker_images", "images generated and delivered", registry=self.registry)
        self.jobs = Counter(
            "gpupipe_worker_jobs", "jobs this worker settled, by outcome", ["outcome"], registry=self.registry
        )
        self.failures = Counter("gpupipe_worker_failures", "failed attempts, by kind", ["kind"], registry=self.registry)
        self.images_per_second = Gauge(
            "gpupipe_worker_images_per_second",
            f"images delivered per second over the last {throughput_window_seconds:g} s",
            registry=self.registry,
        )
        self.in_flight = Gauge("gpupipe_worker_jobs_in_flight", "jobs received and not settled", registry=self.registry)
        self.ready = Gauge("gpupipe_worker_ready", "1 once the model is loaded and warm", registry=self.registry)
        self._window = throughput_window_seconds
        self._delivered: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.images_per_second.set_function(self._throughput)

    def delivered(self, images: int) -> None:
        self.images.inc(images)
        with self._lock:
            self._delivered.append((time.monotonic(), images))

    def _throughput(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._delivered and self._delivered[0][0] < now - self._window:
                self._delivered.popleft()
            return sum(n for _, n in self._delivered) / self._window
