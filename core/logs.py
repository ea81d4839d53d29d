"""Process-wide logging set-up: JSON lines that Cloud Logging understands, or plain text in tests.

Every gpupipe process calls `configure_logging(settings)` once at start-up. Code then logs with
the standard library and puts identifiers in `extra`:

    log.info("job queued", extra={"job_id": job.id, "user_id": user.id})

The JSON formatter writes Cloud Logging's field names (`severity`, `message`, `time`, and
`logging.googleapis.com/trace` when a request carried a trace header), so the lines are
structured without any client library.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from core.settings import Settings

CONTEXT_FIELDS = ("job_id", "user_id", "batch_id", "worker_id", "key_id", "event_id")
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"

_trace: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("gpupipe_trace", default=None)
_HANDLER_NAME = "gpupipe"


def configure_logging(settings: Settings) -> None:
    """Route the root logger to stdout in the settings' format and level. Idempotent: calling
    it again replaces gpupipe's handler instead of adding a second one."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(_HANDLER_NAME)
    if settings.log_format == "json":
        handler.setFormatter(CloudLoggingFormatter(settings.project_id))
    else:
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


@contextlib.contextmanager
def trace_context(header: str | None) -> Iterator[None]:
    """Attach the trace of an incoming request (`X-Cloud-Trace-Context: TRACE/SPAN;o=1` or W3C
    `traceparent: 00-TRACE-SPAN-01`) to every log line written inside the block."""
    parsed = parse_trace_header(header) if header else None
    token = _trace.set(parsed)
    try:
        yield
    finally:
        _trace.reset(token)


def parse_trace_header(header: str) -> tuple[str, str | None] | None:
    """(trace id, span id or None) from either trace header format, or None when malformed."""
    header = header.strip()
    if header.count("-") == 3:  # traceparent: version-trace-span-flags
        _version, w3c_trace, w3c_span, _flags = header.split("-")
        if len(w3c_trace) == 32 and all(ch in "0123456789abcdef" for ch in w3c_trace):
            return w3c_trace, w3c_span or None
        return None
    trace_id, _, rest = header.partition("/")
    span_id = rest.split(";", 1)[0] or None
    if trace_id and len(trace_id) <= 64 and trace_id.isalnum():
        return trace_id, span_id
    return None


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line with Cloud Logging's structured field names."""

    def __init__(self, project_id: str) -> None:
        super().__init__()
        self._project_id = project_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _severity(record.levelno),
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="microseconds"),
            "logger": record.name,
        }
        trace = _trace.get()
        if trace is not None:
            entry[TRACE_FIELD] = f"projects/{self._project_id}/traces/{trace[0]}"
            if trace[1]:
                entry[SPAN_FIELD] = trace[1]
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable single lines for tests and terminals, context fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None)]
        return f"{line} [{' '.join(context)}]" if context else line


def _severity(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"
