"""UTC time helpers: every timestamp gpupipe stores or shows is UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(value: dt.datetime | None) -> str | None:
    """RFC 3339 with a `Z` suffix and millisecond precision, or None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day_key(value: dt.datetime) -> str:
    """The UTC calendar day, used for daily quotas and usage roll-ups."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d")
