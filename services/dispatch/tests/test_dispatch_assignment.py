from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from dispatch.domain.assignment import Candidate, Shift, choose_assignee, on_duty, pick

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
DEPT = uuid4()


def staff(n: int, **kw) -> Candidate:
    return Candidate(
        staff_id=UUID(int=n),
        department_id=kw.pop("department_id", DEPT),
        roles=frozenset(kw.pop("roles", {"handler"})),
        **kw,
    )


def test_least_open_load_wins() -> None:
    a, b = staff(1, open_load=3), staff(2, open_load=1)
    got = choose_assignee([a, b], [], [], at=NOW, working_time=True)
    assert got.staff_id == b.staff_id
    assert "least open load (1)" in got.reason


def test_round_robin_on_ties() -> None:
    a = staff(1, last_assigned_at=NOW - timedelta(minutes=1))
    b = staff(2, last_assigned_at=NOW - timedelta(minutes=5))
    c = staff(3, last_assigned_at=None)
    assert pick([a, b, c])[0] == c  # never assigned first
    assert pick([a, b])[0] == b  # then longest ago
    got = choose_assignee([a, b], [], [], at=NOW, working_time=True)
    assert "round robin among 2" in got.reason


def test_skills_and_role_narrow_the_pool() -> None:
    plain = staff(1, open_load=0)
    lifts = staff(2, open_load=5, skills=frozenset({"lift"}))
    boss = staff(3, open_load=9, roles={"cs_supervisor"})
    got = choose_assignee(
        [plain, lifts], [], [], at=NOW, working_time=True, required_skills=frozenset({"lift"})
    )
    assert got.staff_id == lifts.staff_id
    got = choose_assignee(
        [plain, boss], [], [], at=NOW, working_time=True, preferred_role="cs_supervisor"
    )
    assert got.staff_id == boss.staff_id
    # Nobody with the skill: skills do not empty the pool.
    got = choose_assignee(
        [plain], [], [], at=NOW, working_time=True, required_skills=frozenset({"boiler"})
    )
    assert got.staff_id == plain.staff_id


def test_handlers_before_the_head_unless_the_rule_says_otherwise() -> None:
    """A routine case goes to a handler (抄送办理员) on duty, even one with more open work,
    not to the department head; the head only when no handler is on duty."""
    head = staff(1, roles={"department_head"}, open_load=0)
    handler = staff(2, open_load=4)
    got = choose_assignee([head, handler], [], [], at=NOW, working_time=True)
    assert got.staff_id == handler.staff_id and "role handler" in got.reason
    got = choose_assignee([head], [], [], at=NOW, working_time=True)
    assert got.staff_id == head.staff_id and "nobody on duty has role handler" in got.reason
    got = choose_assignee(
        [head, handler], [], [], at=NOW, working_time=True, preferred_role="department_head"
    )
    assert got.staff_id == head.staff_id


def test_roster_decides_who_is_on_duty() -> None:
    a, b = staff(1), staff(2, open_load=7)
    shifts = [Shift(b.staff_id, NOW - timedelta(hours=1), NOW + timedelta(hours=7))]
    assert on_duty([a, b], shifts, NOW) == [b]
    assert on_duty([a, b], [], NOW) == [a, b]  # no roster at all: everyone active
    assert on_duty([a, b], shifts, NOW + timedelta(hours=8)) == []
    got = choose_assignee([a, b], [], shifts, at=NOW, working_time=True)
    assert got.staff_id == b.staff_id
    inactive = staff(3, active=False)
    assert on_duty([inactive], [], NOW) == []


def test_outside_hours_the_duty_leader_receives() -> None:
    handler = staff(1)
    leader = staff(2, roles={"duty_leader"}, department_id=uuid4())
    other_leader = staff(3, roles={"duty_leader"}, department_id=uuid4())
    shifts = [Shift(leader.staff_id, NOW - timedelta(hours=2), NOW + timedelta(hours=10))]
    got = choose_assignee(
        [handler], [handler, leader, other_leader], shifts, at=NOW, working_time=False
    )
    assert got.staff_id == leader.staff_id and got.after_hours
    assert "duty shift leader on the roster" in got.reason
    # Without roster entries every duty leader counts as on duty, and the reason says so.
    got = choose_assignee([handler], [handler, leader], [], at=NOW, working_time=False)
    assert got.staff_id == leader.staff_id and "no roster entries" in got.reason


def test_outside_hours_without_duty_leader_falls_back_to_department() -> None:
    handler = staff(1)
    got = choose_assignee([handler], [handler], [], at=NOW, working_time=False)
    assert got.staff_id == handler.staff_id and not got.after_hours
    assert "no duty leader" in got.reason


def test_nobody_on_duty_leaves_it_to_the_department_head() -> None:
    got = choose_assignee([staff(1, active=False)], [], [], at=NOW, working_time=True)
    assert got.staff_id is None
    assert "department head" in got.reason


def test_rule_named_handler() -> None:
    a, b = staff(1), staff(2, open_load=10)
    got = choose_assignee([a, b], [], [], at=NOW, working_time=True, preferred_staff_id=b.staff_id)
    assert got.staff_id == b.staff_id
