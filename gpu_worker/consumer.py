"""The consumer: pull job messages, batch them onto the model, deliver the images.

Threads and what each may block on, and the module that holds each part:
- the subscriber's callback threads (`gpu_worker.intake`): read the job, check it, claim it,
  hand it to the batcher; flow control bounds how many messages are outstanding;
- one GPU thread (`Worker._gpu_loop`, here): takes ready batches from the batcher and runs the
  model; it never touches a backend;
- a delivery pool (`gpu_worker.delivery`): encodes, writes outputs create-only, completes the
  job through the ledger with the claim's fencing token, writes a finished batch's summary, acks;
- a monitor thread (`gpu_worker.monitor`): polls the status of jobs in flight (a cancel stops a
  waiting job before it starts and a running one at the next denoising step), writes progress
  at most once per `progress_interval_seconds`, extends leases, replaces a stalled pull
  (`gpu_worker.pull`), and notices idleness;
- the recovery sweep (`gpu_worker.recovery`), when the worker has a reconciler.

The parts share one `gpu_worker.tasks.InFlight`: the jobs in flight with their lock, and the
draining and closed flags. `Worker` builds the parts and owns their lifecycle.

Settling a message: success, a cancelled or already-ended job and a permanent error ack; a
transient error (a backend hiccup, an unexpected exception) nacks, so after the subscription's
maximum delivery attempts the message goes to the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.jobs import Job
from core.ledger import JobLedger
from core.ports import BlobStore, DocumentStore, Publisher, Subscriber
from core.reconciler import Reconciler
from core.settings import Settings
from core.timeutil import utcnow
from gpu_worker.batcher import Batcher
from gpu_worker.delivery import Delivery
from gpu_worker.errors import PermanentError
from gpu_worker.intake import Intake
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.monitor import Monitor
from gpu_worker.outputs import Outputs
from gpu_worker.pull import Pull
from gpu_worker.recovery import RecoveryLoop
from gpu_worker.runner import BatchResult, ImageRequest, Runner
from gpu_worker.tasks import InFlight, Phase, Task

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        documents: DocumentStore,
        blobs: BlobStore,
        subscriber: Subscriber,
        runner: Runner,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        subscription: str | None = None,
        delivery_threads: int = 4,
        clock: Callable[[], dt.datetime] = utcnow,
        on_terminal: Callable[[Job], None] | None = None,
        publisher: Publisher | None = None,
        ledger: JobLedger | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        """With a `reconciler` (or a `publisher` to build one), the worker also runs its sweep in a
        thread of its own (`gpu_worker.recovery`): it redelivers jobs whose delivery was lost,
        this worker's or not. `ledger` is the process's one ledger (the composition root's)."""
        self.settings = settings
        self.worker_id = worker_id
        self.runner = runner
        self.metrics = metrics or WorkerMetrics()
        self._config = settings.worker
        self._clock = clock
        ledger = ledger or JobLedger(documents, clock=clock, on_terminal=on_terminal)
        if reconciler is None and publisher is not None:
            reconciler = Reconciler(documents, blobs, publisher, settings, ledger=ledger, clock=clock)
        self._recovery = RecoveryLoop(reconciler, settings.recovery.interval_seconds) if reconciler else None
        self._batcher: Batcher[Task] = Batcher(self._config.max_batch_size, self._config.max_batch_wait_seconds)
        self._inflight = InFlight(self.metrics.in_flight)
        outputs = Outputs(blobs, documents, settings.names.outputs_bucket)
        self._delivery = Delivery(
            ledger=ledger,
            outputs=outputs,
            inflight=self._inflight,
            runner=runner,
            metrics=self.metrics,
            threads=delivery_threads,
        )
        intake = Intake(
            settings,
            ledger=ledger,
            outputs=outputs,
            inflight=self._inflight,
            batcher=self._batcher,
            runner=runner,
            worker_id=worker_id,
            metrics=self.metrics,
            clock=clock,
        )
        self._pull = Pull(
            subscriber,
            subscription or settings.names.jobs_subscription,
            intake.on_message,
            max_messages=self._config.max_outstanding_messages,
            lease_extension_seconds=self._config.lease_extension_seconds,
            on_ended=self._stream_ended,
            worker_id=worker_id,
        )
        self._stop = threading.Event()
        # The monitor outlives a stop request: while the worker drains, its jobs still need
        # heartbeats, cancel checks and lost-claim checks. It ends when the drain is over.
        self._halt = threading.Event()
        self._aborting = threading.Event()
        self._monitor = Monitor(
            settings,
            ledger=ledger,
            inflight=self._inflight,
            batcher=self._batcher,
            delivery=self._delivery,
            pull=self._pull,
            stop=self._halt,
            on_idle=lambda: self.request_stop("idle"),
            worker_id=worker_id,
            clock=clock,
        )
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()
        self.stop_reason: str | None = None

    @property
    def pull_reopened(self) -> int:
        """How often the stall check replaced the streaming pull."""
        return self._pull.reopened

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the GPU and monitor threads and the streaming pull (the model is already warm)."""
        for target, name in ((self._gpu_loop, "worker-gpu"), (self._monitor.run, "worker-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._inflight.touch()
        self._pull.open()
        if self._recovery is not None:
            self._recovery.start()
        self.metrics.ready.set(1)
        self.ready.set()
        log.info("worker pulling", extra={"worker_id": self.worker_id, "subscription": self._pull.subscription})

    def _stream_ended(self) -> None:
        """A stream that ends while the worker is not draining is fatal: stop the worker (its
        orchestrator starts another). A stream the stall check replaced ends quietly."""
        if not self._inflight.draining.is_set():
            log.error("the streaming pull ended on its own", extra={"worker_id": self.worker_id})
            self.request_stop("stream ended")

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the worker to stop (safe from a signal handler: it only sets an event)."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start, serve until asked to stop (or idle for `exit_when_idle_seconds`), shut down."""
        self.start()
        if on_ready is not None:
            on_ready()
        try:
            self._stop.wait()
        finally:
            self.shutdown()

    def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop taking work, finish what runs within the grace period (else stop it at the next
        step and nack it), give back everything not started, and stop the pull."""
        grace = self._config.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + grace
        self._inflight.draining.set()
        self.metrics.ready.set(0)
        log.info("worker draining", extra={"worker_id": self.worker_id, "reason": self.stop_reason})
        for task in self._batcher.close():
            self._delivery.settle(task, ack=False, outcome="released")
        if not self._inflight.wait_empty(deadline):
            log.warning("grace period over; stopping the running batch", extra={"worker_id": self.worker_id})
            self._aborting.set()
            self._inflight.wait_empty(time.monotonic() + 10)
        self._stop.set()
        self._halt.set()
        held, leftovers = self._inflight.close()
        for message in held:
            message.nack()
        for task in leftovers:
            self._delivery.settle(task, ack=False, outcome="released")
        self._pull.cancel()
        if self._recovery is not None:
            self._recovery.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pull.join(timeout=5)
        self._delivery.shutdown()
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    def status(self) -> dict[str, Any]:
        inflight = len(self._inflight)
        pulling = self._pull.healthy()
        if self._inflight.draining.is_set():
            state = "draining"
        elif not self.ready.is_set():
            state = "starting"
        else:
            state = "ok" if pulling else "cannot_pull"
        return {
            "status": state,
            "worker_id": self.worker_id,
            "model": self.runner.model_name,
            "model_version": self.runner.model_version,
            "jobs_in_flight": inflight,
        }

    # ------------------------------------------------------------------ the GPU thread
    def _gpu_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._batcher.next_batch(timeout=0.25)
            if not batch:
                if self._inflight.draining.is_set():
                    return
                continue
            try:
                self._run_batch(batch)
            except Exception:  # the GPU thread must survive anything one batch does
                log.exception("batch crashed; its jobs are nacked", extra={"worker_id": self.worker_id})
                for task in batch:
                    self._delivery.settle(task, ack=False, outcome="error")

    def _run_batch(self, batch: Sequence[Task]) -> None:
        delivery = self._delivery
        tasks = []
        for task in batch:
            if task.cancelled.is_set():
                delivery.settle_later(task, True, "cancelled")
            else:
                tasks.append(task)
        if not tasks:
            return
        now = self._clock()
        for task in tasks:
            task.enter(Phase.RUNNING)
            self.metrics.queue_wait.observe(max(0.0, (now - task.job.created_at).total_seconds()))
        by_id = {t.job.id: t for t in tasks}
        requests = [
            ImageRequest(
                key=t.job.id,
                prompt=t.job.input["prompt"],
                negative_prompt=t.job.input.get("negative_prompt"),
                seed=int(t.job.input["seed"]),
                num_images=t.job.images,
            )
            for t in tasks
        ]

        def is_cancelled(job_id: str) -> bool:
            return self._aborting.is_set() or by_id[job_id].cancelled.is_set()

        def on_progress(progress: float) -> None:
            for task in tasks:
                task.progress = progress

        images = sum(r.num_images for r in requests)
        try:
            result = self.runner.generate(tasks[0].spec, requests, is_cancelled=is_cancelled, on_progress=on_progress)
        except PermanentError as exc:
            for task in tasks:
                task.enter(Phase.DELIVERING)
                delivery.fail_later(task, exc)
            return
        except Exception as exc:
            log.warning(
                "batch of %d images failed (%s); its jobs are nacked",
                images,
                exc,
                extra={"worker_id": self.worker_id, "job_ids": list(by_id)},
                exc_info=True,  # unknown failures are retried (then dead-lettered): keep the traceback
            )
            self.metrics.failures.labels("transient").inc(len(tasks))
            for task in tasks:
                task.enter(Phase.DELIVERING)
                delivery.settle_later(task, False, "error")
            return
        self.metrics.batch_size.observe(images)
        if result.model_seconds:
            self.metrics.model_seconds.observe(result.model_seconds)
        for task in tasks:
            task.enter(Phase.DELIVERING)
            if task.job.id in result.images:
                share = result.model_seconds * task.job.images / images
                delivery.deliver_later(task, result.images[task.job.id], share)
            elif task.cancelled.is_set():
                delivery.settle_later(task, True, "cancelled")
            else:
                delivery.settle_later(task, False, "released")  # stopped for shutdown
        self._log_batch(tasks, result, images)

    def _log_batch(self, tasks: Sequence[Task], result: BatchResult, images: int) -> None:
        log.info(
            "batch ran: %d jobs, %d images, %.3f s, %d steps",
            len(tasks),
            images,
            result.model_seconds,
            result.steps_run,
            extra={"worker_id": self.worker_id, "job_ids": [t.job.id for t in tasks]},
        )
