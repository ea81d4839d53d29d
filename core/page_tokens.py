"""Page tokens: an opaque, URL-safe cursor bound to the listing (user and filter) that made it,
so a token cannot be replayed against another user's or another filter's listing."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from core.errors import FieldError, InvalidArgument


def encode_token(cursor: tuple[Any, ...], user_id: str, scope: str | None) -> str:
    values = [{"t": v.isoformat()} if isinstance(v, dt.datetime) else v for v in cursor]
    payload = json.dumps({"c": values, "u": user_id, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, user_id: str, scope: str | None) -> tuple[Any, ...]:
    """The cursor of a token this listing returned: (a datetime, a document id). `InvalidArgument`
    naming `page_token` for anything else."""
    bad = InvalidArgument("invalid page token", [FieldError("page_token", "is not a token this listing returned")])
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(payload, Mapping) or payload.get("u") != user_id or payload.get("s") != scope:
        raise bad
    values = payload.get("c")
    if not isinstance(values, list) or len(values) != 2:
        raise bad
    try:
        decoded = [dt.datetime.fromisoformat(v["t"]) if isinstance(v, Mapping) else v for v in values]
    except (KeyError, TypeError, ValueError):
        raise bad from None
    if not isinstance(decoded[0], dt.datetime) or not isinstance(decoded[1], str):
        raise bad
    return tuple(decoded)
