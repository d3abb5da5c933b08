"""Who inside a department receives a work order.

In working hours: staff of the department on duty now (by the roster; a department with
no roster entries counts every active member as on duty), preferring the routing rule's
role (by default `handler`, 抄送办理员: the department's head is not handed routine cases
while a handler is on duty), then those with the skills the case needs, then the least
open load, and on a tie whoever was assigned longest ago (round robin), then the staff id
(determinism).

Outside working hours the receiver of record is the project's duty security shift leader
(当值安保领班, role `duty_leader`) on the roster; he hands what he cannot close to the
service center the next working morning (see `handover.overnight_handover_due`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

DUTY_LEADER = "duty_leader"
HANDLER = "handler"


@dataclass(frozen=True, slots=True)
class Shift:
    staff_id: UUID
    starts_at: datetime
    ends_at: datetime

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True, slots=True)
class Candidate:
    staff_id: UUID
    department_id: UUID | None
    roles: frozenset[str]
    skills: frozenset[str] = frozenset()
    active: bool = True
    open_load: int = 0
    last_assigned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    staff_id: UUID | None
    reason: str
    after_hours: bool = False


def on_duty(
    candidates: Iterable[Candidate], shifts: Iterable[Shift], at: datetime
) -> list[Candidate]:
    """Active candidates on duty at `at`. With no shift for any of them, all active ones."""
    active = [c for c in candidates if c.active]
    ids = {c.staff_id for c in active}
    relevant = [s for s in shifts if s.staff_id in ids]
    if not relevant:
        return active
    working = {s.staff_id for s in relevant if s.covers(at)}
    return [c for c in active if c.staff_id in working]


def _round_robin_key(c: Candidate) -> tuple[int, bool, datetime | None, str]:
    # Never-assigned staff first, then the longest since their last assignment.
    return (
        c.open_load,
        c.last_assigned_at is not None,
        c.last_assigned_at,
        str(c.staff_id),
    )


def pick(
    pool: list[Candidate],
    *,
    preferred_role: str | None = None,
    required_skills: frozenset[str] = frozenset(),
) -> tuple[Candidate | None, list[str]]:
    why: list[str] = []
    if not pool:
        return None, why
    if preferred_role:
        with_role = [c for c in pool if preferred_role in c.roles]
        if with_role:
            pool = with_role
            why.append(f"role {preferred_role}")
        else:
            why.append(f"nobody on duty has role {preferred_role}")
    if required_skills:
        skilled = [c for c in pool if required_skills <= c.skills]
        if skilled:
            pool = skilled
            why.append("skills " + ",".join(sorted(required_skills)))
    best = min(pool, key=_round_robin_key)
    tied = [c for c in pool if c.open_load == best.open_load]
    why.append(f"least open load ({best.open_load})")
    if len(tied) > 1:
        why.append(f"round robin among {len(tied)}")
    return best, why


def choose_assignee(
    department_staff: Iterable[Candidate],
    project_staff: Iterable[Candidate],
    shifts: Iterable[Shift],
    *,
    at: datetime,
    working_time: bool,
    preferred_role: str | None = None,
    preferred_staff_id: UUID | None = None,
    required_skills: frozenset[str] = frozenset(),
) -> Assignment:
    shifts = list(shifts)
    if not working_time:
        leaders = [c for c in project_staff if DUTY_LEADER in c.roles]
        on = on_duty(leaders, shifts, at)
        best, why = pick(on)
        if best is not None:
            rostered = any(s.staff_id == best.staff_id and s.covers(at) for s in shifts)
            who = (
                "duty shift leader on the roster"
                if rostered
                else "duty shift leader (no roster entries: every duty leader counts as on duty)"
            )
            return Assignment(
                best.staff_id,
                f"outside working hours: {who}, " + ", ".join(why),
                after_hours=True,
            )
        fallback = "outside working hours and no duty leader on duty: "
    else:
        fallback = ""
    staff = list(department_staff)
    pool = on_duty(staff, shifts, at)
    if preferred_staff_id is not None:
        named = [c for c in staff if c.staff_id == preferred_staff_id and c.active]
        if named:
            return Assignment(preferred_staff_id, fallback + "the routing rule names the handler")
    best, why = pick(
        pool, preferred_role=preferred_role or HANDLER, required_skills=required_skills
    )
    if best is None:
        return Assignment(
            None, fallback + "nobody of the department is on duty: the department head assigns"
        )
    return Assignment(best.staff_id, fallback + "on duty, " + ", ".join(why))
