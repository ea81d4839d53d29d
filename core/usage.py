"""A user's usage (billing) totals: their usage records (one per terminal job), today's share,
and where they stand against their limits now."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from core import collection_names as c
from core.jobs import JobStatus
from core.ports import DocumentStore, Filter
from core.timeutil import day_key
from core.users import User


def usage_summary(documents: DocumentStore, user: User, now: dt.datetime) -> dict[str, Any]:
    """The `GET /v1/usage` object."""
    today = day_key(now)
    totals = {"jobs": 0, "images": 0, "gpu_seconds": 0.0, "steps": 0}
    by_status = {s.value: 0 for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)}
    day = {"jobs": 0, "images": 0, "gpu_seconds": 0.0}
    for doc in documents.iterate(c.USAGE, where=[Filter("user_id", "==", user.id)]):
        record = doc.data
        images = int(record.get("images", 0))
        gpu = float(record.get("gpu_seconds") or 0.0)
        totals["jobs"] += 1
        totals["images"] += images
        totals["gpu_seconds"] += gpu
        totals["steps"] += int(record.get("steps", 0)) * max(images, 0)
        if record.get("status") in by_status:
            by_status[record["status"]] += 1
        if record.get("day") == today:
            day["jobs"] += 1
            day["images"] += images
            day["gpu_seconds"] += gpu
    quota = documents.get(c.QUOTAS, user.id) or {}
    return {
        **totals,
        "gpu_seconds": round(float(totals["gpu_seconds"]), 3),
        "by_status": by_status,
        "today": {**day, "date": today, "gpu_seconds": round(float(day["gpu_seconds"]), 3)},
        "active_jobs": int(quota.get("active_jobs", 0)),
        "daily_images_reserved": int(quota.get("day_images", 0)) if quota.get("day") == today else 0,
        "limits": dataclasses.asdict(user.limits),
    }
