"""The job message: what is published on the jobs topic for a job, and how it is read back.

The data is the job id alone; the job document is the truth. Attributes: `job_id`, `user_id`,
`model`, `batch_id` (batch jobs) and `requeue` (0 for the message published at admission, n for
the n-th redelivery by the reconciler). A dead letter of a message older than the job's newest
(`requeue < job.requeues`) went astray and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.jobs import Job
from core.ports import Publisher


class NotAJobMessage(ValueError):
    """The message names no job; retrying cannot help."""


def job_message(job: Job) -> dict[str, str]:
    """The attributes of the job's newest message."""
    attrs = {"job_id": job.id, "user_id": job.user_id, "model": job.model_name, "requeue": str(job.requeues)}
    if job.batch_id:
        attrs["batch_id"] = job.batch_id
    return attrs


def publish_job(publisher: Publisher, topic: str, job: Job, *, timeout: float = 10.0) -> str:
    """Publish the job's message (bounded by `timeout`); `BackendUnavailable` when it could not be."""
    return publisher.publish(topic, job.id.encode(), job_message(job), timeout=timeout)


def job_id_of(attributes: Mapping[str, str], data: bytes) -> str:
    """The job a job message is about: the `job_id` attribute, else the data (the job id)."""
    job_id = attributes.get("job_id") or data.decode("utf-8", errors="replace").strip()
    if not job_id or "/" in job_id or len(job_id) > 200:
        raise NotAJobMessage("the message names no job (no job_id attribute, no job id as data)")
    return job_id


def requeue_of(attributes: Mapping[str, str]) -> int:
    """Which message of a job this is: 0 for the original, n for the n-th redelivery."""
    try:
        return max(0, int(attributes.get("requeue", "0")))
    except ValueError:
        return 0
