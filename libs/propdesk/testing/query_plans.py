"""Test support: what an `EXPLAIN (ANALYZE, FORMAT JSON)` plan read."""

from __future__ import annotations

from typing import Any


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan node and every node under it."""
    out = [plan]
    for child in plan.get("Plans", []):
        out += plan_nodes(child)
    return out


def rows_read(plan: dict[str, Any], table: str) -> float:
    """Rows the plan's scans of `table` read: those returned and those thrown away."""
    return sum(
        n.get("Actual Rows", 0) * n.get("Actual Loops", 1)
        + n.get("Rows Removed by Filter", 0)
        + n.get("Rows Removed by Index Recheck", 0)
        for n in plan_nodes(plan)
        if n.get("Relation Name") == table
    )
