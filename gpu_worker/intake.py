"""Taking a message, on the subscriber's callback threads: read the job, drop duplicates, check
the job again, claim it, and hand it to the batcher. Flow control bounds how many messages are
outstanding. A job that already ended is acked; one whose outputs an earlier attempt wrote in
full completes here without the model.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from core import execution
from core.errors import ClaimHeld, InvalidArgument, InvalidTransition, NotFoundError
from core.job_messages import NotAJobMessage, job_id_of
from core.job_request import validate_request
from core.jobs import Job, JobStatus
from core.ledger import JobLedger, stale_after
from core.ports import ReceivedMessage
from core.settings import Settings
from gpu_worker.batcher import Batcher
from gpu_worker.errors import TRANSIENT, PermanentError
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.outputs import Outputs
from gpu_worker.runner import BatchSpec, Runner
from gpu_worker.tasks import Arrival, InFlight, Task

log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        settings: Settings,
        *,
        ledger: JobLedger,
        outputs: Outputs,
        inflight: InFlight,
        batcher: Batcher[Task],
        runner: Runner,
        worker_id: str,
        metrics: WorkerMetrics,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._outputs = outputs
        self._inflight = inflight
        self._batcher = batcher
        self._runner = runner
        self._worker_id = worker_id
        self._metrics = metrics
        self._clock = clock

    def on_message(self, message: ReceivedMessage) -> None:
        self._inflight.touch()
        if self._inflight.closed.is_set():
            log.info("message after shutdown; nacked", extra={"worker_id": self._worker_id})
            message.nack()
            return
        if self._inflight.draining.is_set():
            # Not settled until the pull stops: flow control then holds back further messages.
            if not self._inflight.hold(message):
                message.nack()
            return
        try:
            job_id = job_id_of(message.attributes, message.data)
        except NotAJobMessage as exc:
            log.error("dropping a message that names no job: %s", exc, extra={"message_id": message.message_id})
            message.ack()
            return
        extra = {"job_id": job_id, "worker_id": self._worker_id, "delivery_attempt": message.delivery_attempt}
        arrival = self._inflight.arrive(job_id, message)
        if arrival is Arrival.REDELIVERED:
            return
        if arrival is Arrival.DUPLICATE:
            # Another message for a job this worker already holds (or is taking right now).
            log.info("duplicate message for a job in flight here; acked", extra=extra)
            message.ack()
            return
        try:
            self._admit(job_id, message, extra)
        except TRANSIENT as exc:
            log.warning("could not take the job (%s); nacked", exc, extra=extra)
            self._metrics.failures.labels("transient").inc()
            message.nack()
        finally:
            self._inflight.admitted(job_id)

    def _admit(self, job_id: str, message: ReceivedMessage, extra: dict[str, Any]) -> None:
        job = self._ledger.get(job_id)
        if job is None:
            log.warning("message for an unknown job; acked", extra=extra)
            message.ack()
            return
        if job.status.terminal:
            if job.batch_id is not None:
                # A redelivery after a failed summary write: finish the batch's bookkeeping now.
                self._outputs.write_summary(self._ledger.complete_batch_if_done(job.batch_id))
            log.info("job already %s; acked", job.status.value, extra=extra)
            self._metrics.jobs.labels("skipped").inc()
            message.ack()
            return
        if job.model_name != self._runner.model_name:
            log.warning(
                "job wants model %s, this worker runs %s; nacked", job.model_name, self._runner.model_name, extra=extra
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
                worker_id=self._worker_id,
                model_version=self._runner.model_version,
                stale_before=self._clock() - stale_after(self._settings),
            )
        except ClaimHeld as exc:
            self._metrics.jobs.labels("duplicate").inc()
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
        if not self._inflight.add(task):
            # Draining began meanwhile: the message is held until the pull stops, and the claim is
            # given back now, so the redelivery is claimed at once instead of after a stale heartbeat.
            try:
                self._ledger.release(job_id, worker_id=claim.worker_id, token=claim.token)
            except TRANSIENT as exc:
                log.warning("could not release the job (%s); it is recovered once stale", exc, extra=extra)
            return
        log.info("job claimed", extra=extra)
        self._batcher.put(spec, task, job.images)

    def _spec(self, job: Job) -> BatchSpec:
        """Check the stored input again (the API validated it; a worker must not trust that)."""
        try:
            request = validate_request(job.input, self._settings.request_limits, choose_seed=False)
        except InvalidArgument as exc:
            detail = "; ".join(f"{d.field}: {d.message}" for d in exc.details) or exc.message
            raise PermanentError("invalid_argument", f"the stored job input is invalid: {detail}") from None
        if request["seed"] is None:
            raise PermanentError("invalid_argument", "the stored job input has no seed")
        return BatchSpec(
            model_version=self._runner.model_version,
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
        self._metrics.failures.labels("permanent").inc()
        self._metrics.jobs.labels("failed").inc()
        self._outputs.write_summary(transition.completed_batch)
        message.ack()

    def _finish_from_existing_outputs(self, job: Job, message: ReceivedMessage, extra: dict[str, Any]) -> bool:
        """A redelivered job whose outputs were all written by an earlier attempt completes
        without running the model again. Returns True when it did."""
        outputs = self._outputs.existing(job)
        if outputs is None:
            return False
        try:
            transition = execution.complete(
                self._ledger,
                job.id,
                outputs=outputs,
                gpu_seconds=job.gpu_seconds or 0.0,
                model_version=job.model_version or self._runner.model_version,
            )
        except InvalidTransition as exc:
            log.info("job ended meanwhile (%s); acked", exc, extra=extra)
            message.ack()
            return True
        log.info("outputs already written by an earlier attempt; job completed without recomputing", extra=extra)
        self._metrics.jobs.labels("succeeded").inc()
        self._outputs.write_summary(transition.completed_batch)
        message.ack()
        return True
