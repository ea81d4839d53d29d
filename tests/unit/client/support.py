"""Helpers for driving the SDK and the CLI against the real `api` function, in-process.

The Flask app that functions-framework builds from functions/main.py serves the requests
(through `httpx.WSGITransport`); the test installs memory backends it also holds, so it can
move jobs along through the real `JobLedger` (no worker runs in unit tests) and write the
output images a worker would. Output URLs of the memory blob store (`memory://bucket/name`)
are served by a small transport that reads that same store.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from flask import Flask

from adapters.memory import MemoryBackends
from core.accounts import Accounts
from core.jobs import CONTENT_TYPES, JobOutput, JobStatus, output_object_name
from core.ledger import JobLedger
from core.ports import NotFound as BlobNotFound
from core.settings import Settings
from core.users import UserLimits

API_URL = "http://api.test"


def tiny_png() -> bytes:
    """A valid 1x1 PNG, so downloaded bytes are a real image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class StorageTransport(httpx.BaseTransport):
    """Serves `memory://bucket/name` URLs from the memory blob store, and remembers every
    request so tests can check what was sent to storage."""

    def __init__(self, memory: MemoryBackends) -> None:
        self._memory = memory
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            body = self._memory.blobs.read_url(str(request.url))
        except (BlobNotFound, ValueError):
            return httpx.Response(404, text="no such object")
        return httpx.Response(200, content=body, headers={"Content-Type": "application/octet-stream"})


@dataclass
class Stack:
    settings: Settings
    memory: MemoryBackends
    app: Flask
    storage: StorageTransport
    ledger: JobLedger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = JobLedger(self.memory.documents)

    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.app)

    def new_user(self, name: str = "alice", **limits: int) -> tuple[str, str]:
        """A user and a fresh API key for them: (user_id, api_key)."""
        accounts = Accounts(self.memory.documents, self.settings)
        defaults = UserLimits.defaults(self.settings.user_limits)
        user = accounts.create_user(name, limits=UserLimits(**{**defaults.__dict__, **limits}))
        return user.id, accounts.create_key(user.id).plain

    # What a worker does, through the same domain code a worker uses --------------------
    def start(self, job_id: str, progress: float | None = None) -> None:
        self.ledger.transition(job_id, JobStatus.RUNNING, lambda job: setattr(job, "model_version", "v1"))
        if progress is not None:
            self.ledger.record_progress(job_id, progress)

    def succeed(self, job_id: str, image: bytes | None = None) -> list[bytes]:
        """Finish a running (or queued) job with its images written to the outputs bucket."""
        job = self.ledger.require(job_id)
        if job.status is JobStatus.QUEUED:
            self.start(job_id)
        bucket = self.settings.names.outputs_bucket
        fmt = str(job.input.get("output_format", "png"))
        images = []
        outputs = []
        for index in range(job.images):
            data = (image or tiny_png()) + bytes([index])
            name = output_object_name(job.user_id, job.id, index, fmt)
            self.memory.blobs.create(bucket, name, data, content_type=CONTENT_TYPES[fmt])
            images.append(data)
            outputs.append(
                JobOutput(
                    index=index,
                    uri=f"gs://{bucket}/{name}",
                    content_type=CONTENT_TYPES[fmt],
                    width=int(job.input["width"]),
                    height=int(job.input["height"]),
                    seed=int(job.input["seed"]) + index,
                    bucket=bucket,
                    name=name,
                )
            )

        def finish(running: Any) -> None:
            running.outputs = outputs
            running.gpu_seconds = 0.25

        self.ledger.transition(job_id, JobStatus.SUCCEEDED, finish)
        return images

    def fail(self, job_id: str, code: str = "model_error", message: str = "the model refused") -> None:
        from core.jobs import JobError

        self.ledger.transition(job_id, JobStatus.FAILED, lambda job: setattr(job, "error", JobError(code, message)))


class FakeTime:
    """A clock and a sleep that advances it, so waits run instantly and can be inspected.
    `on_sleep` lets a test act (move a job along) while the code under test "sleeps"."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep.pop(0)()
