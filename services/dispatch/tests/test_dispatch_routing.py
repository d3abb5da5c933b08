from __future__ import annotations

from uuid import uuid4

import pytest

from dispatch.domain.routing import (
    DEFAULT_BY_CATEGORY,
    Department,
    RoutingInput,
    RoutingRule,
    parse_routing_hints,
    resolve_department,
    route,
)

P1, P2 = uuid4(), uuid4()


def case(category: str = "facility_repair", grade: str = "simple", **kw) -> RoutingInput:
    return RoutingInput(project_id=kw.pop("project_id", P1), category=category, grade=grade, **kw)


@pytest.mark.parametrize(
    ("category", "department", "role"),
    [
        ("facility_repair", "engineering", None),
        ("environment", "cleaning", None),
        ("security", "security", None),
        ("parking", "security", None),
        ("noise", "security", None),
        ("fees", "finance", None),
        ("staff_attitude", "customer_service", "cs_supervisor"),
        ("landscaping", "landscaping", None),
        ("decoration", "engineering", None),
        ("other", "customer_service", "cs_supervisor"),
        ("something_new", "customer_service", "cs_supervisor"),
    ],
)
def test_default_table(category: str, department: str, role: str | None) -> None:
    d = route(case(category), [])
    assert (d.department, d.handler_role) == (department, role)
    assert d.rule_id.startswith("default:")
    assert d.reason


def test_every_domain_category_has_a_default() -> None:
    assert set(DEFAULT_BY_CATEGORY) == {
        "facility_repair",
        "environment",
        "security",
        "parking",
        "noise",
        "fees",
        "staff_attitude",
        "landscaping",
        "decoration",
    }


def test_major_goes_to_the_director_with_quality_informed() -> None:
    d = route(case("facility_repair", "major"), [])
    assert d.department == "management"
    assert d.handler_role == "director"
    assert d.inform == ("quality",)
    assert d.rule_id == "default:grade:major"


def test_tenant_rule_beats_default_and_records_why() -> None:
    rules = [RoutingRule(id=7, department="outsourced_lifts", category="facility_repair")]
    d = route(case(), rules)
    assert d.department == "outsourced_lifts"
    assert d.rule_id == "tenant:7"
    assert "category=facility_repair" in d.reason


def test_specificity_project_then_criteria_then_priority() -> None:
    rules = [
        RoutingRule(id=1, department="a", category="noise"),
        RoutingRule(id=2, department="b", category="noise", building="3"),
        RoutingRule(id=3, department="c", category="noise", project_id=P1),
        RoutingRule(id=4, department="d", category="noise", project_id=P2, building="3"),
    ]
    assert route(case("noise", building="3"), rules).department == "c"  # project beats criteria
    assert route(case("noise", building="3", project_id=P2), rules).department == "d"
    assert route(case("noise", building="9", project_id=P2), rules).department == "a"
    assert route(case("noise", building="3", project_id=uuid4()), rules).department == "b"
    urgent = [*rules, RoutingRule(id=5, department="e", grade="complex", priority=10)]
    assert route(case("noise", "complex", building="3"), urgent).department == "e"


def test_ties_go_to_the_lowest_id() -> None:
    rules = [
        RoutingRule(id=9, department="late", category="fees"),
        RoutingRule(id=3, department="early", category="fees"),
    ]
    assert route(case("fees"), rules).department == "early"


def test_place_matches_by_containment_and_grade_rules() -> None:
    rules = [RoutingRule(id=1, department="parking_contractor", place="地下车库")]
    assert route(case("parking", place="地下车库B2"), rules).department == "parking_contractor"
    assert route(case("parking", place="大门"), rules).department == "security"
    assert route(case("parking"), rules).department == "security"


def test_a_tenant_rule_can_override_major() -> None:
    rules = [RoutingRule(id=1, department="management", grade="major", handler_role="director")]
    d = route(case("fees", "major"), rules)
    assert d.rule_id == "tenant:1" and d.inform == ()


def test_resolve_department_by_code_then_kind_project_first() -> None:
    tenant_wide = Department(uuid4(), "eng", "engineering", None)
    own = Department(uuid4(), "eng-p1", "engineering", P1)
    other = Department(uuid4(), "eng-p2", "engineering", P2)
    deps = [tenant_wide, own, other]
    assert resolve_department("engineering", P1, deps) == own
    assert resolve_department("eng", P1, deps) == tenant_wide
    assert resolve_department("eng-p2", P1, deps) is None
    assert resolve_department("finance", P1, deps) is None


def test_parse_onboarding_hints() -> None:
    parsed = parse_routing_hints(
        [
            {"category": "noise", "department": "customer_service", "note": "quiet estate"},
            {"project": "P1", "building": "5", "department": "engineering", "priority": 2},
            {"category": "fees"},
            {"department": "x", "project": "nope"},
            {"department": "x", "colour": "red"},
            {"department": "x", "priority": "high"},
        ],
        {"P1": P1},
    )
    assert [r.department for r in parsed.rules] == ["customer_service", "engineering"]
    assert parsed.rules[1].project_id == P1 and parsed.rules[1].priority == 2
    assert all(r.source == "onboarding" for r in parsed.rules)
    assert [(p.index, p.field) for p in parsed.problems] == [
        (2, "department"),
        (3, "project"),
        (4, "colour"),
        (5, "priority"),
    ]
