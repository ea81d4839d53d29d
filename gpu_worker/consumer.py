"""The consumer: pull job messages, batch them onto the model, deliver the images.

Threads and what each may block on:
- the subscriber's callback threads (`_on_message`): read the job, check it, claim it, hand
  it to the batcher; flow control bounds how many messages are outstanding;
- one GPU thread (`_gpu_loop`): takes ready batches from the batcher and runs the model; it
  never touches a backend;
- a delivery pool (`_deliver`): encodes, writes outputs create-only, completes the job through
  the ledger, writes a finished batch's summary, acks;
- a monitor thread (`_monitor_loop`): polls the status of jobs in flight (a cancel stops a
  waiting job before it starts and a running one at the next denoising step), writes progress
  at most once per `progress_interval_seconds`, extends leases, and notices idleness.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core import execution
from core.batches import Batch, write_summary
from core.errors import ClaimHeld, ClaimLost, InvalidArgument, InvalidTransition, NotFoundError
from core.execution import Claim
from core.job_messages import NotAJobMessage, job_id_of
from core.job_request import validate_request
from core.jobs import CONTENT_TYPES, Job, JobOutput, JobStatus, image_seed, output_object_name
from core.ledger import JobLedger, stale_after
from core.ports import (
    AdapterError,
    AlreadyExists,
    BlobStore,
    DocumentStore,
    Publisher,
    ReceivedMessage,
    StreamingPull,
    Subscriber,
)
from core.reconciler import Reconciler
from core.settings import Settings
from core.timeutil import utcnow
from gpu_worker.batcher import Batcher
from gpu_worker.encoding import encode_image, image_parameters
from gpu_worker.errors import PermanentError, TransientError
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.recovery import RecoveryLoop
from gpu_worker.runner import BatchResult, BatchSpec, ImageRequest, Runner

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

# How long a message may be held at most (its lease is extended until then).
_MAX_LEASE_SECONDS = 3600
# Backend failures that another attempt may get past.
_TRANSIENT = (AdapterError, TransientError, TimeoutError, ConnectionError)


class Phase(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"


@dataclass(eq=False)
class Task:
    """One job in flight in this worker, from its message's arrival to its ack or nack."""

    job: Job
    message: ReceivedMessage
    spec: BatchSpec
    received_at: float
    claim: Claim
    cancelled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    phase: Phase = Phase.WAITING
    progress: float = 0.0
    progress_written: float = 0.0
    progress_written_at: float = 0.0
    status_checked_at: float = 0.0

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"job_id": self.job.id, "user_id": self.job.user_id, "batch_id": self.job.batch_id}


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
        self._documents = documents
        self._blobs = blobs
        self._subscriber = subscriber
        self._subscription = subscription or settings.names.jobs_subscription
        self._ledger = ledger or JobLedger(documents, clock=clock, on_terminal=on_terminal)
        if reconciler is None and publisher is not None:
            reconciler = Reconciler(documents, blobs, publisher, settings, ledger=self._ledger, clock=clock)
        self._recovery = RecoveryLoop(reconciler, settings.recovery.interval_seconds) if reconciler else None
        self._clock = clock
        self._batcher: Batcher[Task] = Batcher(self._config.max_batch_size, self._config.max_batch_wait_seconds)
        self._pool = ThreadPoolExecutor(max_workers=delivery_threads, thread_name_prefix="worker-deliver")
        self._inflight: dict[str, Task] = {}
        self._intake: set[str] = set()
        """Job ids whose message is being admitted on a subscriber thread right now."""
        self._held: list[ReceivedMessage] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._aborting = threading.Event()
        self._closed = threading.Event()
        self._pull: StreamingPull | None = None
        self._threads: list[threading.Thread] = []
        self._last_activity = time.monotonic()
        self._last_message = time.monotonic()
        self._stall_checked = time.monotonic()
        self.pull_reopened = 0
        self.ready = threading.Event()
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the GPU and monitor threads and the streaming pull (the model is already warm)."""
        for target, name in ((self._gpu_loop, "worker-gpu"), (self._monitor_loop, "worker-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._last_activity = time.monotonic()
        self._open_pull()
        if self._recovery is not None:
            self._recovery.start()
        self.metrics.ready.set(1)
        self.ready.set()
        log.info("worker pulling", extra={"worker_id": self.worker_id, "subscription": self._subscription})

    def _open_pull(self) -> None:
        pull = self._subscriber.subscribe(
            self._subscription,
            self._on_message,
            max_messages=self._config.max_outstanding_messages,
            max_lease_seconds=_MAX_LEASE_SECONDS,
            lease_extension_seconds=self._config.lease_extension_seconds,
        )
        self._pull = pull
        self._last_message = time.monotonic()
        watcher = threading.Thread(target=self._watch_stream, args=(pull,), name="worker-stream", daemon=True)
        watcher.start()
        self._threads.append(watcher)

    def _watch_stream(self, pull: StreamingPull) -> None:
        """A stream that ends while the worker is not draining is fatal: stop the worker (its
        orchestrator starts another). A stream the stall check replaced ends quietly."""
        try:
            pull.wait()
        except AdapterError as exc:
            log.error("the streaming pull failed: %s", exc, extra={"worker_id": self.worker_id})
        if pull is not self._pull:
            return
        if not self._draining.is_set():
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
        self._draining.set()
        self.metrics.ready.set(0)
        log.info("worker draining", extra={"worker_id": self.worker_id, "reason": self.stop_reason})
        for task in self._batcher.close():
            self._settle(task, ack=False, outcome="released")
        if not self._wait_inflight(deadline):
            log.warning("grace period over; stopping the running batch", extra={"worker_id": self.worker_id})
            self._aborting.set()
            self._wait_inflight(time.monotonic() + 10)
        self._stop.set()
        with self._lock:
            self._closed.set()
            held, self._held = self._held, []
            leftovers = list(self._inflight.values())
        for message in held:
            message.nack()
        for task in leftovers:
            self._settle(task, ack=False, outcome="released")
        if self._pull is not None:
            self._pull.cancel()
        if self._recovery is not None:
            self._recovery.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=True)
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    def _wait_inflight(self, deadline: float) -> bool:
        with self._lock:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            inflight = len(self._inflight)
        pulling = self._pull is not None and self._pull.healthy()
        if self._draining.is_set():
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

    # ------------------------------------------------------------------ intake (subscriber threads)
    def _on_message(self, message: ReceivedMessage) -> None:
        self._last_activity = self._last_message = time.monotonic()
        if self._closed.is_set():
            log.info("message after shutdown; nacked", extra={"worker_id": self.worker_id})
            message.nack()
            return
        if self._draining.is_set():
            # Not settled until the pull stops: flow control then holds back further messages.
            with self._lock:
                if not self._closed.is_set():
                    self._held.append(message)
                    return
            message.nack()
            return
        try:
            job_id = job_id_of(message.attributes, message.data)
        except NotAJobMessage as exc:
            log.error("dropping a message that names no job: %s", exc, extra={"message_id": message.message_id})
            message.ack()
            return
        extra = {"job_id": job_id, "worker_id": self.worker_id, "delivery_attempt": message.delivery_attempt}
        with self._lock:
            running = self._inflight.get(job_id)
            if running is not None and running.message.message_id == message.message_id:
                running.message = message  # a redelivery of the same message: its new lease is the live one
                return
            if running is not None or job_id in self._intake:
                # Another message for a job this worker already holds (or is taking right now).
                duplicate = True
            else:
                duplicate = False
                self._intake.add(job_id)
        if duplicate:
            log.info("duplicate message for a job in flight here; acked", extra=extra)
            message.ack()
            return
        try:
            self._admit(job_id, message, extra)
        except _TRANSIENT as exc:
            log.warning("could not take the job (%s); nacked", exc, extra=extra)
            self.metrics.failures.labels("transient").inc()
            message.nack()
        finally:
            with self._lock:
                self._intake.discard(job_id)

    def _admit(self, job_id: str, message: ReceivedMessage, extra: dict[str, Any]) -> None:
        job = self._ledger.get(job_id)
        if job is None:
            log.warning("message for an unknown job; acked", extra=extra)
            message.ack()
            return
        if job.status.terminal:
            if job.batch_id is not None:
                # A redelivery after a failed summary write: finish the batch's bookkeeping now.
                self._write_summary(self._ledger.complete_batch_if_done(job.batch_id))
            log.info("job already %s; acked", job.status.value, extra=extra)
            self.metrics.jobs.labels("skipped").inc()
            message.ack()
            return
        if job.model_name != self.runner.model_name:
            log.warning(
                "job wants model %s, this worker runs %s; nacked", job.model_name, self.runner.model_name, extra=extra
            )
            message.nack()
            return
        try:
            spec = self._spec(job)
        except PermanentError as exc:
            self._fail_unstarted(job, message, exc)
            return
        if job.status is JobStatus.RUNNING and self._finish_from_existing_outputs(job, message, extra):
            return
        try:
            job, claim = execution.claim(
                self._ledger,
                job_id,
                worker_id=self.worker_id,
                model_version=self.runner.model_version,
                stale_before=self._clock() - stale_after(self.settings),
            )
        except ClaimHeld as exc:
            self.metrics.jobs.labels("duplicate").inc()
            if message.delivery_attempt > 1:
                # A message that came back: most likely the holder's own, whose lease lapsed because
                # the holder died and whose heartbeat is not stale yet. Back it goes, to be claimed
                # once it is (or acked once the job ended).
                log.info("%s; redelivered message nacked until its holder is stale", exc, extra=extra)
                message.nack()
            else:
                # A duplicate publish: the live holder settles the job; should it die, its own
                # message or the reconciler brings the job back. Nothing to run here.
                log.info("%s; duplicate message acked", exc, extra=extra)
                message.ack()
            return
        except (InvalidTransition, NotFoundError) as exc:
            log.info("job ended before it started (%s); acked", exc, extra=extra)
            message.ack()
            return
        task = Task(job, message, spec, time.monotonic(), claim)
        with self._lock:
            if self._draining.is_set():
                self._held.append(message)
                return
            self._inflight[job_id] = task
            self.metrics.in_flight.set(len(self._inflight))
        log.info("job claimed", extra=extra)
        self._batcher.put(spec, task, job.images)

    def _spec(self, job: Job) -> BatchSpec:
        """Check the stored input again (the API validated it; a worker must not trust that)."""
        try:
            request = validate_request(job.input, self.settings.request_limits, choose_seed=False)
        except InvalidArgument as exc:
            detail = "; ".join(f"{d.field}: {d.message}" for d in exc.details) or exc.message
            raise PermanentError("invalid_argument", f"the stored job input is invalid: {detail}") from None
        if request["seed"] is None:
            raise PermanentError("invalid_argument", "the stored job input has no seed")
        return BatchSpec(
            model_version=self.runner.model_version,
            width=request["width"],
            height=request["height"],
            steps=request["num_inference_steps"],
            guidance_scale=float(request["guidance_scale"]),
            scheduler=request["scheduler"],
        )

    def _fail_unstarted(self, job: Job, message: ReceivedMessage, error: PermanentError) -> None:
        log.warning("job failed: %s", error.message, extra={"job_id": job.id, "code": error.code})
        try:
            transition = execution.fail(self._ledger, job.id, code=error.code, message=error.message)
        except InvalidTransition:
            message.ack()
            return
        self.metrics.failures.labels("permanent").inc()
        self.metrics.jobs.labels("failed").inc()
        self._write_summary(transition.completed_batch)
        message.ack()

    def _finish_from_existing_outputs(self, job: Job, message: ReceivedMessage, extra: dict[str, Any]) -> bool:
        """A redelivered job whose outputs were all written by an earlier attempt completes
        without running the model again. Returns True when it did."""
        fmt = job.input["output_format"]
        bucket = self.settings.names.outputs_bucket
        outputs = []
        for index in range(job.images):
            name = output_object_name(job.user_id, job.id, index, fmt)
            if self._blobs.stat(bucket, name) is None:
                return False
            outputs.append(self._output(job, index, bucket, name))
        try:
            transition = execution.complete(
                self._ledger,
                job.id,
                outputs=outputs,
                gpu_seconds=job.gpu_seconds or 0.0,
                model_version=job.model_version or self.runner.model_version,
            )
        except InvalidTransition as exc:
            log.info("job ended meanwhile (%s); acked", exc, extra=extra)
            message.ack()
            return True
        log.info("outputs already written by an earlier attempt; job completed without recomputing", extra=extra)
        self.metrics.jobs.labels("succeeded").inc()
        self._write_summary(transition.completed_batch)
        message.ack()
        return True

    # ------------------------------------------------------------------ the GPU thread
    def _gpu_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._batcher.next_batch(timeout=0.25)
            if not batch:
                if self._draining.is_set():
                    return
                continue
            try:
                self._run_batch(batch)
            except Exception:  # the GPU thread must survive anything one batch does
                log.exception("batch crashed; its jobs are nacked", extra={"worker_id": self.worker_id})
                for task in batch:
                    self._settle(task, ack=False, outcome="error")

    def _run_batch(self, batch: Sequence[Task]) -> None:
        tasks = []
        for task in batch:
            if task.cancelled.is_set():
                self._pool.submit(self._settle, task, True, "cancelled")
            else:
                tasks.append(task)
        if not tasks:
            return
        now = self._clock()
        for task in tasks:
            with task.lock:
                task.phase = Phase.RUNNING
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
                self._to_delivery(task)
                self._pool.submit(self._fail_started, task, exc)
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
                self._to_delivery(task)
                self._pool.submit(self._settle, task, False, "error")
            return
        self.metrics.batch_size.observe(images)
        if result.model_seconds:
            self.metrics.model_seconds.observe(result.model_seconds)
        for task in tasks:
            self._to_delivery(task)
            if task.job.id in result.images:
                share = result.model_seconds * task.job.images / images
                self._pool.submit(self._deliver, task, result.images[task.job.id], share)
            elif task.cancelled.is_set():
                self._pool.submit(self._settle, task, True, "cancelled")
            else:
                self._pool.submit(self._settle, task, False, "released")  # stopped for shutdown
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

    @staticmethod
    def _to_delivery(task: Task) -> None:
        # Under the task's lock, so no progress write for it can start after this.
        with task.lock:
            task.phase = Phase.DELIVERING

    # ------------------------------------------------------------------ delivery (pool threads)
    def _deliver(self, task: Task, images: Sequence[Image], gpu_seconds: float) -> None:
        job = task.job
        fmt = job.input["output_format"]
        bucket = self.settings.names.outputs_bucket
        version = self.runner.model_version
        try:
            if not self._still_holds(task):
                return
            outputs = []
            for index, image in enumerate(images):
                name = output_object_name(job.user_id, job.id, index, fmt)
                params = image_parameters(job.input, index=index, model_name=job.model_name, model_version=version)
                data = encode_image(image, fmt, params)
                try:
                    self._blobs.create(
                        bucket,
                        name,
                        data,
                        content_type=CONTENT_TYPES[fmt],
                        metadata={"job_id": job.id, "model_version": version, "seed": str(params["seed"])},
                    )
                except AlreadyExists:
                    log.info("output %s was already written; kept", name, extra=task.log_extra)
                outputs.append(self._output(job, index, bucket, name))
            try:
                transition = execution.complete(
                    self._ledger,
                    job.id,
                    outputs=outputs,
                    gpu_seconds=gpu_seconds,
                    model_version=version,
                    claim=task.claim,
                )
            except ClaimLost as exc:
                # The outputs stay: their names are the job's own and create-only, so the worker
                # that holds the job now finds them and records them instead of writing them again.
                log.warning("%s; result dropped", exc, extra=task.log_extra)
                self._settle(task, ack=True, outcome="claim_lost")
                return
            except InvalidTransition as exc:
                log.info("job ended while it ran (%s); outputs dropped", exc, extra=task.log_extra)
                for output in outputs:
                    self._blobs.delete(bucket, output.name)
                self._settle(task, ack=True, outcome="cancelled")
                return
            self._write_summary(transition.completed_batch)
        except _TRANSIENT as exc:
            log.warning("delivery failed (%s); nacked", exc, extra=task.log_extra)
            self.metrics.failures.labels("transient").inc()
            self._settle(task, ack=False, outcome="error")
            return
        self.metrics.delivered(len(outputs))
        log.info("job succeeded", extra=task.log_extra)
        self._settle(task, ack=True, outcome="succeeded" if transition.changed else "duplicate")

    def _fail_started(self, task: Task, error: PermanentError) -> None:
        log.warning("job failed: %s", error.message, extra={**task.log_extra, "code": error.code})
        try:
            transition = execution.fail(
                self._ledger, task.job.id, code=error.code, message=error.message, claim=task.claim
            )
            self._write_summary(transition.completed_batch)
        except InvalidTransition:
            pass  # ended meanwhile, or another worker holds it now (ClaimLost)
        except _TRANSIENT as exc:
            log.warning("could not record the failure (%s); nacked", exc, extra=task.log_extra)
            self._settle(task, ack=False, outcome="error")
            return
        self.metrics.failures.labels("permanent").inc()
        self._settle(task, ack=True, outcome="failed")

    def _release(self, task: Task) -> None:
        """Give the claim back before the nack, so the redelivery can be claimed at once."""
        try:
            self._ledger.release(task.job.id, worker_id=task.claim.worker_id, token=task.claim.token)
        except _TRANSIENT as exc:
            log.warning("could not release the job (%s); it is recovered once stale", exc, extra=task.log_extra)

    def _output(self, job: Job, index: int, bucket: str, name: str) -> JobOutput:
        fmt = job.input["output_format"]
        return JobOutput(
            index=index,
            uri=f"gs://{bucket}/{name}",
            content_type=CONTENT_TYPES[fmt],
            width=int(job.input["width"]),
            height=int(job.input["height"]),
            seed=image_seed(int(job.input["seed"]), index),
            bucket=bucket,
            name=name,
        )

    def _write_summary(self, batch: Batch | None) -> None:
        """Write a completed batch's summary.json. A failure propagates, so the message is nacked
        and its redelivery (which finds the job terminal) writes the summary again."""
        if batch is None:
            return
        write_summary(self._blobs, self._documents, self.settings.names.outputs_bucket, batch)

    def _still_holds(self, task: Task) -> bool:
        """Check, before writing outputs, that this worker still holds the job; settle it if not."""
        current = self._ledger.get(task.job.id)
        if current is None or current.status.terminal:
            self._settle(task, ack=True, outcome="cancelled")
            return False
        try:
            task.claim.check(current)
        except ClaimLost as exc:
            log.warning("%s; result dropped before writing outputs", exc, extra=task.log_extra)
            self._settle(task, ack=True, outcome="claim_lost")
            return False
        return True

    def _settle(self, task: Task, ack: bool, outcome: str) -> None:
        with task.lock:
            if task.phase is Phase.DONE:
                return
            task.phase = Phase.DONE
        if not ack:
            self._release(task)
        (task.message.ack if ack else task.message.nack)()
        self.metrics.jobs.labels(outcome).inc()
        with self._lock:
            if self._inflight.get(task.job.id) is task:
                del self._inflight[task.job.id]
            self.metrics.in_flight.set(len(self._inflight))
            self._lock.notify_all()
        self._last_activity = time.monotonic()

    # ------------------------------------------------------------------ the monitor thread
    def _monitor_loop(self) -> None:
        interval = max(0.05, self._config.progress_interval_seconds)
        lease_every = max(1.0, self._config.lease_extension_seconds / 3)
        last_lease = time.monotonic()
        while not self._stop.wait(min(0.25, interval)):
            now = time.monotonic()
            with self._lock:
                tasks = list(self._inflight.values())
            for task in tasks:
                try:
                    self._watch(task, now, interval)
                except _TRANSIENT as exc:
                    log.warning("could not check the job (%s)", exc, extra=task.log_extra)
            if now - last_lease >= lease_every:
                last_lease = now
                for task in tasks:
                    self._extend_lease(task)
            self._check_stall(now, bool(tasks))
            idle_limit = self._config.exit_when_idle_seconds
            if idle_limit is not None and not tasks and now - self._last_activity >= idle_limit:
                log.info("idle for %.0f s; stopping", idle_limit, extra={"worker_id": self.worker_id})
                self.request_stop("idle")

    def _check_stall(self, now: float, busy: bool) -> None:
        """A pull that received nothing for `stream_stall_seconds` while jobs have been queued
        that long is stuck (a stream the backend stopped serving): replace it. Checked at most
        every half of that, with one cheap query."""
        stall = self.settings.recovery.stream_stall_seconds
        if busy or self._draining.is_set() or now - self._stall_checked < stall / 2:
            return
        self._stall_checked = now
        if now - self._last_message < stall:
            return
        try:
            waiting = self._ledger.waiting_since(JobStatus.QUEUED, self._clock() - dt.timedelta(seconds=stall), limit=1)
        except _TRANSIENT as exc:
            log.warning("could not check for a stalled pull (%s)", exc, extra={"worker_id": self.worker_id})
            return
        if not waiting:
            return
        log.warning(
            "nothing received for %.0f s while jobs wait; reopening the pull",
            stall,
            extra={"worker_id": self.worker_id},
        )
        old = self._pull
        self._open_pull()
        self.pull_reopened += 1
        if old is not None:
            old.cancel()

    def _watch(self, task: Task, now: float, interval: float) -> None:
        if task.phase in (Phase.DELIVERING, Phase.DONE) or now - task.status_checked_at < interval:
            return
        task.status_checked_at = now
        job = self._ledger.get(task.job.id)
        lost = job is not None and not job.status.terminal and not _holds(task.claim, job)
        if job is None or job.status.terminal or lost:
            state = "taken over by another worker" if lost else (job.status.value if job else "deleted")
            log.info("job %s while in flight; stopping it", state, extra=task.log_extra)
            task.cancelled.set()
            for removed in self._batcher.remove(lambda t: t is task):
                self._settle(removed, ack=True, outcome="claim_lost" if lost else "cancelled")
            return
        with task.lock:
            due = task.phase is Phase.RUNNING and task.progress > task.progress_written
            if due and now - task.progress_written_at >= interval:
                progress = task.progress
                self._ledger.record_progress(task.job.id, progress)
                task.progress_written = progress
                task.progress_written_at = now

    def _extend_lease(self, task: Task) -> None:
        if task.phase is Phase.DONE:
            return
        try:
            task.message.modify_ack_deadline(min(600, self._config.lease_extension_seconds))
            if task.phase in (Phase.WAITING, Phase.RUNNING):
                self._ledger.heartbeat(task.job.id)  # tells other workers this job's owner is alive
        except _TRANSIENT as exc:
            log.warning("could not extend the lease (%s)", exc, extra=task.log_extra)


def _holds(claim: Claim, job: Job) -> bool:
    return job.worker_id == claim.worker_id and job.attempts == claim.token
