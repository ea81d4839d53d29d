"""Query rules both document stores enforce, so code that passes on the fakes runs on Firestore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.ports import Filter, Order


def check_query(
    where: Sequence[Filter], order_by: Sequence[Order], limit: int | None, start_after: tuple[Any, ...] | None
) -> None:
    """Refuse what Firestore cannot run as the port describes it (both stores call this)."""
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if start_after is not None and len(start_after) != len(order_by) + 1:
        raise ValueError(f"a cursor holds {len(order_by) + 1} values (the order fields and the id)")
    ordered = {o.field for o in order_by}
    for f in where:
        if f.op in INEQUALITIES and f.field not in ordered:
            raise ValueError(f"an inequality filter on {f.field!r} needs {f.field!r} in order_by")


INEQUALITIES = frozenset({"<", "<=", ">", ">=", "!="})
