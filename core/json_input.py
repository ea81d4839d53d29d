"""Strict JSON decoding for what clients send (API bodies, upload lines).

Python's `json` accepts `NaN`, `Infinity` and numbers such as `1e400` that overflow to
infinity, none of which is JSON a client can rely on (and which we could not write back out),
and it raises `RecursionError` on deeply nested input. `loads` turns all of these into a
`ValueError` that names the problem, so callers answer 400, never 500.
"""

from __future__ import annotations

import json
import math
from typing import Any


def loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value
