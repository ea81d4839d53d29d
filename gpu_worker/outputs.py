"""A job's images in the outputs bucket, and its batch's summary.

Output objects are named by the job (`core.jobs.output_object_name`) and written create-only,
so a retry, or another worker that took the job over, finds what an earlier attempt wrote
instead of writing it again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.batches import Batch, write_summary
from core.jobs import CONTENT_TYPES, Job, JobOutput, image_seed, output_object_name
from core.ports import AlreadyExists, BlobStore, DocumentStore
from gpu_worker.encoding import encode_image, image_parameters
from gpu_worker.tasks import job_log_extra

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)


class Outputs:
    def __init__(self, blobs: BlobStore, documents: DocumentStore, bucket: str) -> None:
        self._blobs = blobs
        self._documents = documents
        self.bucket = bucket

    def record(self, job: Job, index: int, name: str) -> JobOutput:
        fmt = job.input["output_format"]
        return JobOutput(
            index=index,
            uri=f"gs://{self.bucket}/{name}",
            content_type=CONTENT_TYPES[fmt],
            width=int(job.input["width"]),
            height=int(job.input["height"]),
            seed=image_seed(int(job.input["seed"]), index),
            bucket=self.bucket,
            name=name,
        )

    def existing(self, job: Job) -> list[JobOutput] | None:
        """The job's outputs when an earlier attempt wrote every one of them, else None."""
        fmt = job.input["output_format"]
        outputs = []
        for index in range(job.images):
            name = output_object_name(job.user_id, job.id, index, fmt)
            if self._blobs.stat(self.bucket, name) is None:
                return None
            outputs.append(self.record(job, index, name))
        return outputs

    def write(self, job: Job, images: Sequence[Image], model_version: str) -> list[JobOutput]:
        """Encode and write the job's images create-only; one already there is kept."""
        fmt = job.input["output_format"]
        outputs = []
        for index, image in enumerate(images):
            name = output_object_name(job.user_id, job.id, index, fmt)
            params = image_parameters(job.input, index=index, model_name=job.model_name, model_version=model_version)
            data = encode_image(image, fmt, params)
            try:
                self._blobs.create(
                    self.bucket,
                    name,
                    data,
                    content_type=CONTENT_TYPES[fmt],
                    metadata={"job_id": job.id, "model_version": model_version, "seed": str(params["seed"])},
                )
            except AlreadyExists:
                log.info("output %s was already written; kept", name, extra=job_log_extra(job))
            outputs.append(self.record(job, index, name))
        return outputs

    def delete(self, outputs: Sequence[JobOutput]) -> None:
        for output in outputs:
            self._blobs.delete(self.bucket, output.name)

    def write_summary(self, batch: Batch | None) -> None:
        """Write a completed batch's summary.json. A failure propagates, so the message is nacked
        and its redelivery (which finds the job terminal) writes the summary again."""
        if batch is None:
            return
        write_summary(self._blobs, self._documents, self.bucket, batch)
