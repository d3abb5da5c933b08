"""Multi-row VALUES lists, and their arguments, for plain asyncpg statements that write a
complaint's timeline rows and outbox events (`recording`, `case_progress`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

TIMELINE_COLUMNS = ("tenant_id", "project_id", "complaint_id", "type", "actor", "reason", "data")
OUTBOX_COLUMNS = (
    "event_id",
    "tenant_id",
    "project_id",
    "event_type",
    "subject",
    "envelope",
    "trace_context",
)


def values_sql(columns: Sequence[str], rows: int, start: int) -> tuple[str, int]:
    """`($start, …), (…)` for `rows` rows of `columns`; and the next parameter number."""
    groups = []
    n = start
    for _ in range(rows):
        groups.append("(" + ", ".join(f"${n + i}" for i in range(len(columns))) + ")")
        n += len(columns)
    return ", ".join(groups), n


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def timeline_args(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The arguments of `rows` (as `history.timeline_and_events` makes them), in column order."""
    return [json_text(r[c]) if c == "data" else r[c] for r in rows for c in TIMELINE_COLUMNS]


def outbox_args(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The arguments of `rows` (as `Outbox.rows` makes them), in column order."""
    return [r[c] for r in rows for c in OUTBOX_COLUMNS]
