"""Response schemas of the HTTP API. They feed the OpenAPI document (next to the job request
schema from `core.job_request`, the validator's own model) and the unit tests check real
responses against them, so the document cannot drift from what the API sends."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldDetail(_Schema):
    field: str
    message: str


class ErrorBody(_Schema):
    code: str = Field(
        description="invalid_argument, unauthenticated, not_found, method_not_allowed, conflict, "
        "payload_too_large, unsupported_media_type, resource_exhausted, unavailable or internal"
    )
    message: str
    details: list[FieldDetail]


class Error(_Schema):
    error: ErrorBody


class ModelRef(_Schema):
    name: str
    version: str | None


class Output(_Schema):
    index: int
    uri: str = Field(description="gs:// URI of the image")
    url: str = Field(description="a URL the image can be fetched from (signed, short-lived on GCS)")
    content_type: str
    width: int
    height: int
    seed: int


class JobFailure(_Schema):
    code: str
    message: str


class Metrics(_Schema):
    queue_seconds: float | None
    run_seconds: float | None
    gpu_seconds: float | None


class Job(_Schema):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    input: dict[str, Any] = Field(description="the normalized request, seed included")
    model: ModelRef
    progress: float = Field(ge=0, le=1)
    outputs: list[Output]
    error: JobFailure | None
    metrics: Metrics
    batch_id: str | None
    metadata: dict[str, Any] | None


class JobList(_Schema):
    jobs: list[Job]
    next_page_token: str | None


class BatchJobs(_Schema):
    total: int
    succeeded: int
    failed: int
    cancelled: int
    pending: int


class Batch(_Schema):
    id: str
    status: Literal["running", "completed", "rejected"]
    source: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    completed_at: dt.datetime | None
    lines: int
    invalid_lines: int
    jobs: BatchJobs
    errors_uri: str | None
    summary_uri: str | None
    rejection: str | None


class UsageDay(_Schema):
    date: str
    jobs: int
    images: int
    gpu_seconds: float


class Limits(_Schema):
    max_concurrent_jobs: int
    daily_images: int
    requests_per_minute: int


class Usage(_Schema):
    jobs: int = Field(description="terminal jobs (one usage record each)")
    images: int
    gpu_seconds: float
    steps: int
    by_status: dict[str, int]
    today: UsageDay
    active_jobs: int = Field(description="jobs queued or running now")
    daily_images_reserved: int = Field(description="images counted against today's quota")
    limits: Limits


class Model(_Schema):
    name: str
    version: str | None
    default: bool


class ModelList(_Schema):
    models: list[Model]


class Health(_Schema):
    status: Literal["ok"]


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (Error, Job, JobList, Batch, Usage, ModelList, Health)
