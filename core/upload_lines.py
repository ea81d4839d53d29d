"""Reading an uploaded JSON-lines file: one job request per non-empty line.

Invalid lines do not stop valid ones: each becomes a `Line` with the error `errors.jsonl` lists.
A file that cannot be read at all raises `Rejected` with the reason (not UTF-8, no job lines,
too many lines, no line that is JSON at all).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from core import json_input
from core.errors import InvalidArgument
from core.job_request import validate_request
from core.settings import RequestLimits


@dataclass(frozen=True)
class Line:
    number: int
    request: dict[str, Any] | None
    error: dict[str, Any] | None


class Rejected(Exception):
    """The whole file is refused; `code` and `message` go into `rejected.json`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_lines(data: bytes, limits: RequestLimits) -> list[Line]:
    """The file's job lines, each validated as a request (seeds are not chosen here)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("invalid_encoding", f"the file is not UTF-8 (byte {exc.start})") from None
    raw_lines = [(n, raw.strip()) for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1)]
    raw_lines = [(n, raw) for n, raw in raw_lines if raw]
    if not raw_lines:
        raise Rejected("invalid_argument", "the file has no job lines")
    if len(raw_lines) > limits.max_upload_lines:
        raise Rejected(
            "payload_too_large",
            f"the file has {len(raw_lines)} lines; the limit is {limits.max_upload_lines}",
        )
    lines: list[Line] = []
    for number, raw in raw_lines:
        try:
            decoded = json_input.loads(raw)
        except ValueError as exc:
            lines.append(Line(number, None, _error("invalid_argument", "the line is not JSON", "(line)", str(exc))))
            continue
        try:
            request = validate_request(decoded, limits, choose_seed=False)
        except InvalidArgument as exc:
            lines.append(Line(number, None, _invalid(exc)))
            continue
        lines.append(Line(number, request, None))
    if all(line.error is not None and line.error.get("json") is False for line in lines):
        raise Rejected("invalid_argument", "no line of the file is JSON: expected one JSON object per line")
    return [dataclasses.replace(line, error=_public_error(line.error)) for line in lines]


def _error(code: str, message: str, field: str, detail: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": [{"field": field, "message": detail}], "json": False}


def _invalid(exc: InvalidArgument) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "details": [d.as_dict() for d in exc.details]}


def _public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {k: v for k, v in error.items() if k != "json"}
