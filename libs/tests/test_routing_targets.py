"""The one rule by which a routing target names a department (dispatch routes by it,
intake's onboarding checks by it)."""

from __future__ import annotations

from dataclasses import dataclass

from propdesk.routing_targets import resolve_department


@dataclass(frozen=True)
class Dept:
    code: str
    kind: str
    project: str | None


def _serves(d: Dept) -> str | None:
    return d.project


def test_a_code_wins_over_a_kind() -> None:
    by_kind = Dept("eng", "engineering", "P1")
    by_code = Dept("engineering", "maintenance", None)
    assert resolve_department("engineering", "P1", [by_kind, by_code], _serves) is by_code


def test_the_projects_own_department_before_a_company_wide_one() -> None:
    company = Dept("eng", "engineering", None)
    own = Dept("eng-p1", "engineering", "P1")
    assert resolve_department("engineering", "P1", [company, own], _serves) is own
    assert resolve_department("engineering", "P2", [company, own], _serves) is company


def test_among_equals_the_lowest_code() -> None:
    b = Dept("eng-b", "engineering", "P1")
    a = Dept("eng-a", "engineering", "P1")
    assert resolve_department("engineering", "P1", [b, a], _serves) is a


def test_a_department_of_another_project_is_never_named() -> None:
    other = Dept("eng", "engineering", "P2")
    assert resolve_department("eng", "P1", [other], _serves) is None
    assert resolve_department("engineering", "P1", [other], _serves) is None
    assert resolve_department("finance", "P2", [other], _serves) is None
