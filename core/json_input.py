"""Strict JSON decoding for what clients send (API bodies, upload lines).

Python's `json` accepts `NaN`, `Infinity` and numbers such as `1e400` that overflow to
infinity, none of which is JSON a client can rely on (and which we could not write back out),
it raises `RecursionError` on deeply nested input, and it decodes an escaped lone surrogate
(`"\\ud800"`) into a string that is not Unicode, which Firestore (or anything that encodes
UTF-8) then refuses. `loads` turns all of these into a `ValueError` that names the problem, so
callers answer 400, never 500.
"""

from __future__ import annotations

import json
import math
from typing import Any


def loads(text: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    _check_unicode(value)
    return value


def _check_unicode(value: Any) -> None:
    """Every string (object keys included) must be encodable as UTF-8: a `\\uXXXX` escape of
    half a surrogate pair is valid JSON syntax but names no character (RFC 8259 section 8.2)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(item[exc.start])
                raise ValueError(f"a string holds the lone surrogate \\u{code:04x}, which is not a character") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value
