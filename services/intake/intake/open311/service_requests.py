"""Complaints as Open311 service requests, and the `GET requests` query.

Status: Open311 knows only `open` and `closed`; the complaint's own state (status, validity,
grade, repeat calls, group link) goes to `status_notes`. A complaint counts as closed when its
status is one of `CLOSED_STATUSES` (an invalidated complaint is closed by intake-core).
service_request_id is the complaint id (a UUID); the human reference (e.g. P1-20261126-0001)
is in `service_notice`, and lookups accept either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from intake.domain.case_status import CaseStatus
from intake.domain.vocabulary import CATEGORY_LABELS_EN, GRADE_LABELS_ZH, Category, Grade
from intake.open311.catalog import category_of
from intake.open311.errors import Open311Error, Open311Errors, bad_request

# The case's work is done (or it was closed as invalid): Open311 says closed from resolution
# on, as GeoReport clients expect; a reopened case is open again.
CLOSED_STATUSES = frozenset(
    s.value
    for s in (
        CaseStatus.RESOLVED,
        CaseStatus.SIGNED_OFF,
        CaseStatus.FEEDBACK_GIVEN,
        CaseStatus.CLOSED,
        CaseStatus.INVALID,
    )
)
DEFAULT_WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
MAX_IDS = 100


def open311_status(status: str) -> str:
    return "closed" if status in CLOSED_STATUSES else "open"


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _service_name(category: str | None) -> str | None:
    if category is None:
        return None
    try:
        c = Category(category)
    except ValueError:
        return category
    return f"{c.label_zh} {CATEGORY_LABELS_EN[c]}"


def _grade_zh(grade: str | None) -> str:
    try:
        return GRADE_LABELS_ZH[Grade(grade)] if grade else ""
    except ValueError:
        return grade or ""


def service_notice(row: Mapping[str, Any]) -> str:
    """What the caller may tell the complainant: the reference and how it is classed."""
    parts = [f"已受理，编号 {row['reference']}"]
    if row.get("grade"):
        parts.append(f"等级 {_grade_zh(row['grade'])}")
    if (row.get("case") or {}).get("kind") == "duplicate":
        # A repeat call: the answer is the open case it joined, not a new request.
        parts.append("与已有投诉合并处理")
    if (row.get("calls") or 1) > 1:
        parts.append(f"业主来电 {row['calls']} 次")
    if row.get("group_case_id"):
        parts.append("列入群体投诉")
    return "；".join(parts) + f" (reference {row['reference']})"


def status_notes(row: Mapping[str, Any]) -> str:
    notes = [f"status={row['status']}", f"validity={row['validity']}"]
    if row.get("grade"):
        notes.append(f"grade={row['grade']}")
    if (row.get("calls") or 1) > 1:
        notes.append(f"calls={row['calls']}")
    if row.get("group_case_id"):
        notes.append(f"group_case_id={row['group_case_id']}")
    return "; ".join(notes)


def service_request(row: Mapping[str, Any], agency: str | None = None) -> dict[str, Any]:
    """One complaint row (intake.complaints columns) as an Open311 service request."""
    media = next((a.get("url") for a in row.get("attachments") or () if a.get("url")), None)
    return {
        "service_request_id": str(row["id"]),
        "status": open311_status(row["status"]),
        "status_notes": status_notes(row),
        "service_name": _service_name(row.get("category")),
        "service_code": row.get("category"),
        "description": row["content"],
        "agency_responsible": agency,
        "service_notice": service_notice(row),
        "requested_datetime": _iso(row["received_at"]),
        "updated_datetime": _iso(row.get("updated_at") or row.get("recorded_at")),
        # Deadlines are the SLA service's; intake does not know them.
        "expected_datetime": None,
        "address": row.get("place"),
        "address_id": str(row["unit_id"]) if row.get("unit_id") else None,
        "zipcode": None,
        "lat": row.get("lat"),
        "long": row.get("long"),
        "media_url": media,
    }


@dataclass(frozen=True, slots=True)
class RequestQuery:
    ids: tuple[UUID, ...]
    references: tuple[str, ...]
    service_codes: tuple[str, ...]
    start: datetime
    end: datetime
    statuses: tuple[str, ...]  # Open311 statuses: open, closed

    @property
    def by_id(self) -> bool:
        return bool(self.ids or self.references)


def _csv(raw: str | None) -> list[str]:
    return [p.strip() for p in (raw or "").split(",") if p.strip()]


def _date(raw: str | None, name: str, errors: list[Open311Error]) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        errors.append(bad_request(f"{name}: must be a W3C/ISO 8601 date-time"))
        return None
    if value.tzinfo is None:
        errors.append(bad_request(f"{name}: must include a UTC offset"))
        return None
    try:
        # The database driver sends UTC; an instant at the ends of the calendar overflows.
        return value.astimezone(UTC)
    except OverflowError:
        errors.append(bad_request(f"{name}: out of range"))
        return None


def _window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The default window around what was given. Raises OverflowError past the calendar."""
    if end is None:
        end = (start + DEFAULT_WINDOW) if start is not None else now
    if start is None:
        start = end - DEFAULT_WINDOW
    return start, end


def parse_request_query(params: Mapping[str, str], now: datetime) -> RequestQuery:
    """`GET requests` parameters. Without dates, the last 90 days; a window is at most 90
    days (the spec's default, and a bound on what one call scans). Raises Open311Errors."""
    errors: list[Open311Error] = []
    ids: list[UUID] = []
    references: list[str] = []
    raw_ids = _csv(params.get("service_request_id"))
    if len(raw_ids) > MAX_IDS:
        errors.append(bad_request(f"service_request_id: at most {MAX_IDS} ids"))
    for raw in raw_ids[:MAX_IDS]:
        try:
            ids.append(UUID(raw))
        except ValueError:
            references.append(raw)
    if errors:
        raise Open311Errors(errors)
    if ids or references:
        # The spec: service_request_id "overrides all other arguments": they are neither
        # applied nor checked (the window is only a placeholder; lookups ignore it).
        start, end = _window(None, None, now)
        return RequestQuery(tuple(ids), tuple(references), (), start, end, ())
    codes = _csv(params.get("service_code"))
    for code in codes:
        if category_of(code) is None:
            errors.append(bad_request(f"service_code: {code!r} is not a service code"))
    statuses = [s.lower() for s in _csv(params.get("status"))]
    for s in statuses:
        if s not in ("open", "closed"):
            errors.append(bad_request(f"status: {s!r} is not one of open, closed"))
    start = _date(params.get("start_date"), "start_date", errors)
    end = _date(params.get("end_date"), "end_date", errors)
    if errors:
        raise Open311Errors(errors)
    try:
        start, end = _window(start, end, now)
    except OverflowError:
        given = "start_date" if end is None else "end_date"
        raise Open311Errors(
            [bad_request(f"{given}: out of range (no {DEFAULT_WINDOW.days}-day window fits)")]
        ) from None
    if start > end:
        raise Open311Errors([bad_request("start_date: must not be after end_date")])
    if end - start > DEFAULT_WINDOW:
        raise Open311Errors([bad_request("start_date/end_date: at most 90 days apart")])
    return RequestQuery((), (), tuple(codes), start, end, tuple(dict.fromkeys(statuses)))


def native_statuses(open311: tuple[str, ...]) -> tuple[set[str] | None, bool]:
    """(statuses to include or exclude, exclude?) for a store query: `closed` means the
    closed set, `open` everything else; both or none means no filter."""
    wanted = set(open311)
    if wanted in (set(), {"open", "closed"}):
        return None, False
    if wanted == {"closed"}:
        return set(CLOSED_STATUSES), False
    return set(CLOSED_STATUSES), True


# mySociety's GeoReport v2 extension (servicerequestupdates): one update per timeline entry.
CLOSING_EVENT_TYPES = frozenset({"complaint.invalidation_approved", "work_order.closed"})
_UPDATE_TEXT = {
    "complaint.received": "已受理 received",
    "complaint.classified": "已分类定级 classified",
    "complaint.regraded": "等级调整 regraded",
    "complaint.grouped": "列入群体投诉 grouped",
    "complaint.duplicate_joined": "业主再次来电 the household called again",
    "complaint.overridden": "分类/等级人工调整 classification changed",
    "complaint.regrade_withheld": "保留人工定级 staff grade kept",
    "complaint.invalidation_requested": "申请无效关闭 invalidation requested",
    "complaint.invalidation_approved": "无效投诉，已关闭 closed as invalid",
    "complaint.invalidation_rejected": "无效申请被驳回 invalidation rejected",
    "complaint.flagged": "已标记 flagged",
    "work_order.dispatched": "已派单 dispatched",
    "work_order.accepted": "已接单 accepted",
    "work_order.rejected": "部门退单 rejected by the department",
    "work_order.reassigned": "改派 reassigned",
    "work_order.handover_requested": "申请转交 hand-over requested",
    "work_order.handed_over": "已转交 handed over",
    "work_order.progressed": "处理进展 progress",
    "work_order.resolved": "已处理 resolved",
    "work_order.signed_off": "部门签字 signed off",
    "work_order.feedback_given": "已反馈 feedback given",
    "work_order.followed_up": "跟进 followed up",
    "work_order.closed": "已结案 closed",
    "work_order.reopened": "重新打开 reopened",
}


def request_update(row: Mapping[str, Any]) -> dict[str, Any]:
    """One complaint timeline row (intake.complaint_events) as a request_update. Its status
    is the request's "after the update" (mySociety), as GET requests says it: a work-order
    step's row records the case status after it (`status_after`, closed from resolution
    on); other entries close the request only when they are a closing decision."""
    kind = row["type"]
    text = _UPDATE_TEXT.get(kind, kind)
    if row.get("reason"):
        text = f"{text}: {row['reason']}"
    status_after = (row.get("data") or {}).get("status_after")
    if isinstance(status_after, str):
        status = open311_status(status_after)
    else:
        status = "closed" if kind in CLOSING_EVENT_TYPES else "open"
    return {
        "update_id": str(row["id"]),
        "service_request_id": str(row["complaint_id"]),
        "status": status,
        "updated_datetime": _iso(row["at"]),
        "description": text,
        "media_url": None,
        "external_status_code": kind,
    }
