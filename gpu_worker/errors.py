"""The worker's exceptions. What a failure means for the message decides its class:
a `PermanentError` fails the job and acks; a `TransientError` nacks for a later attempt."""

from __future__ import annotations

from core.ports import AdapterError


class WorkerError(Exception):
    """Base of the worker's own errors."""


class ConfigurationError(WorkerError):
    """The worker cannot start with these settings (no model, an unavailable device, ...)."""


class PermanentError(WorkerError):
    """Retrying cannot help: the job fails with `code` and its message is acked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransientError(WorkerError):
    """Another attempt may succeed (a backend hiccup, the GPU out of memory): nack."""


class BatchCancelled(WorkerError):
    """Every job of the running batch was cancelled; raised from the step callback to stop the pipeline."""


TRANSIENT = (AdapterError, TransientError, TimeoutError, ConnectionError)
"""Backend failures that another attempt may get past: the message is nacked."""
