"""The JSON form of a complaint, as the API returns it (and as idempotent replays store it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def complaint_body(row: Mapping[str, Any], project_code: str | None = None) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "reference": row["reference"],
        "project_id": str(row["project_id"]),
        "project": project_code or row.get("project_code"),
        "channel": row["channel"],
        "status": row["status"],
        "validity": row["validity"],
        "category": row["category"],
        "category_source": row["category_source"],
        "category_reason": row["category_reason"],
        "grade": row["grade"],
        "grade_reasons": list(row["grade_reasons"] or []),
        "complainant": {
            "name": row["complainant_name"],
            "phone": row["complainant_phone"],
            "email": row.get("complainant_email"),
            "household_id": _str(row["household_id"]),
        },
        "unit": {
            "id": _str(row["unit_id"]),
            "building": row["building"],
            "room": row["room"],
        },
        "received_at": _iso(row["received_at"]),
        "recorded_at": _iso(row["recorded_at"]),
        "occurred_at": _iso(row["occurred_at"]),
        "place": row["place"],
        "lat": row.get("lat"),
        "long": row.get("long"),
        "content": row["content"],
        "demand": row["demand"],
        "receiver": row["receiver"],
        "attachments": list(row["attachments"] or []),
        "external_reference": row["external_reference"],
        "device_id": row.get("device_id"),
        "second_complaint": {
            "prior_cases": row.get("prior_cases") or 0,
            "previous_case_id": _str(row.get("previous_case_id")),
        },
        "forwarded_result": row.get("forwarded_result"),
        # The household's calls about the case (repeats join it, see record_complaint).
        "calls": row.get("calls") or 1,
        "last_call_at": _iso(row.get("last_call_at")),
        "group_case_id": _str(row["group_case_id"]),
        "flags": list(row["flags"] or []),
        "version": row["version"],
    }
