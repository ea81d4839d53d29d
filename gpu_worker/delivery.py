"""The delivery pool: after the GPU thread ran a batch, write each job's outputs, complete (or
fail) the job through the ledger with the claim's fencing token, write a finished batch's
summary, and settle the message. Settling is here too, for every task however it ends: a nack
first gives the claim back, and the task leaves the in-flight table.

Every ledger write carries the claim (this worker's id and attempt number): a worker whose job
was taken over meanwhile (it looked dead, its claim went stale) cannot overwrite the new
holder's result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from core import execution
from core.errors import ClaimLost, InvalidTransition
from core.ledger import JobLedger
from core.ports import AdapterError
from gpu_worker.errors import TRANSIENT, PermanentError
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.outputs import Outputs
from gpu_worker.runner import Runner
from gpu_worker.tasks import InFlight, Task

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)


class Delivery:
    def __init__(
        self,
        *,
        ledger: JobLedger,
        outputs: Outputs,
        inflight: InFlight,
        runner: Runner,
        metrics: WorkerMetrics,
        threads: int,
    ) -> None:
        self._ledger = ledger
        self._outputs = outputs
        self._inflight = inflight
        self._runner = runner
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker-deliver")

    # ------------------------------------------------------------------ handing work to the pool
    def deliver_later(self, task: Task, images: Sequence[Image], gpu_seconds: float) -> None:
        self._pool.submit(self._deliver, task, images, gpu_seconds)

    def fail_later(self, task: Task, error: PermanentError) -> None:
        self._pool.submit(self._fail_started, task, error)

    def settle_later(self, task: Task, ack: bool, outcome: str) -> None:
        self._pool.submit(self.settle, task, ack, outcome)

    def shutdown(self) -> None:
        """Finish what was handed over (the GPU thread has stopped by now)."""
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ on the pool's threads
    def _deliver(self, task: Task, images: Sequence[Image], gpu_seconds: float) -> None:
        job = task.job
        version = self._runner.model_version
        try:
            if not self._still_holds(task):
                return
            outputs = self._outputs.write(job, images, version)
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
                self.settle(task, ack=True, outcome="claim_lost")
                return
            except InvalidTransition as exc:
                log.info("job ended while it ran (%s); outputs dropped", exc, extra=task.log_extra)
                self._outputs.delete(outputs)
                self.settle(task, ack=True, outcome="cancelled")
                return
            self._outputs.write_summary(transition.completed_batch)
        except TRANSIENT as exc:
            log.warning("delivery failed (%s); nacked", exc, extra=task.log_extra)
            self._metrics.failures.labels("transient").inc()
            self.settle(task, ack=False, outcome="error")
            return
        self._metrics.delivered(len(outputs))
        log.info("job succeeded", extra=task.log_extra)
        self.settle(task, ack=True, outcome="succeeded" if transition.changed else "duplicate")

    def _fail_started(self, task: Task, error: PermanentError) -> None:
        log.warning("job failed: %s", error.message, extra={**task.log_extra, "code": error.code})
        try:
            transition = execution.fail(
                self._ledger, task.job.id, code=error.code, message=error.message, claim=task.claim
            )
            self._outputs.write_summary(transition.completed_batch)
        except InvalidTransition:
            pass  # ended meanwhile, or another worker holds it now (ClaimLost)
        except TRANSIENT as exc:
            log.warning("could not record the failure (%s); nacked", exc, extra=task.log_extra)
            self.settle(task, ack=False, outcome="error")
            return
        self._metrics.failures.labels("permanent").inc()
        self.settle(task, ack=True, outcome="failed")

    def _still_holds(self, task: Task) -> bool:
        """Check, before writing outputs, that this worker still holds the job; settle it if not."""
        current = self._ledger.get(task.job.id)
        if current is None or current.status.terminal:
            self.settle(task, ack=True, outcome="cancelled")
            return False
        try:
            task.claim.check(current)
        except ClaimLost as exc:
            log.warning("%s; result dropped before writing outputs", exc, extra=task.log_extra)
            self.settle(task, ack=True, outcome="claim_lost")
            return False
        return True

    # ------------------------------------------------------------------ settling (any thread)
    def settle(self, task: Task, ack: bool, outcome: str) -> None:
        """Ack or nack the task's message once, count the outcome, and drop it from the table."""
        if not task.finish():
            return
        try:
            if not ack:
                self._release(task)
            (task.message.ack if ack else task.message.nack)()
        except AdapterError as exc:
            # The message's lease lapses and it comes back; this worker must forget the task
            # anyway, or the job would look in flight here for ever.
            log.warning(
                "could not settle the message (%s); it comes back once its lease lapses", exc, extra=task.log_extra
            )
        finally:
            self._metrics.jobs.labels(outcome).inc()
            self._inflight.remove(task)

    def _release(self, task: Task) -> None:
        """Give the claim back before the nack, so the redelivery can be claimed at once."""
        try:
            self._ledger.release(task.job.id, worker_id=task.claim.worker_id, token=task.claim.token)
        except TRANSIENT as exc:
            log.warning("could not release the job (%s); it is recovered once stale", exc, extra=task.log_extra)
