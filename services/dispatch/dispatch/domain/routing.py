"""Which department (and which handler) a classified complaint goes to, and why.

A rule matches on any of category, grade, building and place (a rule leaves out what it
does not care about) within a tenant, optionally one project. The winner is the rule with
the highest `priority`, then the most specific (project-bound beats tenant-wide, then more
criteria), then the lowest id. When no tenant rule matches, the platform defaults below
decide, so a freshly onboarded tenant dispatches from its first complaint.

Default choices beyond DOMAIN.md's department list, written down so a tenant can override:
- noise → security: night patrols are who can walk over and stop it now; day-time
  renovation noise is also security's gate and hours enforcement.
- decoration → engineering: decoration complaints are about rule breaches (load-bearing
  walls, pipes, debris, hours) that the engineering decoration inspector checks.
- major grade → the management-office director, the quality department informed; grade
  wins over category because a major case is the director's whatever it is about.
- staff attitude and other → customer service, the supervisor (客服主管) handles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from propdesk import routing_targets

# Department codes the defaults name. Onboarding creates departments with these codes or
# kinds; `resolve_department` matches either.
MANAGEMENT = "management"
ENGINEERING = "engineering"
CLEANING = "cleaning"
SECURITY = "security"
FINANCE = "finance"
CUSTOMER_SERVICE = "customer_service"
LANDSCAPING = "landscaping"
QUALITY = "quality"


@dataclass(frozen=True, slots=True)
class RoutingInput:
    project_id: UUID
    category: str
    grade: str
    building: str | None = None
    place: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRule:
    id: int
    department: str  # department code (or kind)
    category: str | None = None
    grade: str | None = None
    building: str | None = None
    place: str | None = None
    project_id: UUID | None = None
    handler_role: str | None = None
    handler_staff_id: UUID | None = None
    inform: tuple[str, ...] = ()
    priority: int = 0
    note: str = ""
    source: str = "api"

    def criteria(self) -> dict[str, str]:
        found = {
            "category": self.category,
            "grade": self.grade,
            "building": self.building,
            "place": self.place,
        }
        return {k: v for k, v in found.items() if v is not None}

    def matches(self, case: RoutingInput) -> bool:
        if self.project_id is not None and self.project_id != case.project_id:
            return False
        if self.category is not None and self.category != case.category:
            return False
        if self.grade is not None and self.grade != case.grade:
            return False
        if self.building is not None and self.building != (case.building or ""):
            return False
        # A place rule matches a place that mentions it ("地下车库B2" matches "地下车库").
        return self.place is None or (case.place is not None and self.place in case.place)

    def rank(self) -> tuple[int, int, int]:
        return (self.priority, 1 if self.project_id else 0, len(self.criteria()))


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    department: str
    handler_role: str | None
    handler_staff_id: UUID | None
    inform: tuple[str, ...]
    rule_id: str  # "tenant:<id>" or "default:<name>"
    reason: str

    def as_record(self) -> dict[str, object]:
        return {
            "department": self.department,
            "handler_role": self.handler_role,
            "handler_staff_id": str(self.handler_staff_id) if self.handler_staff_id else None,
            "inform": list(self.inform),
            "rule_id": self.rule_id,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    name: str
    department: str
    handler_role: str | None = None
    inform: tuple[str, ...] = ()


MAJOR_ROUTE = DefaultRoute("grade:major", MANAGEMENT, "director", (QUALITY,))
DEFAULT_BY_CATEGORY: Mapping[str, DefaultRoute] = {
    "facility_repair": DefaultRoute("category:facility_repair", ENGINEERING),
    "environment": DefaultRoute("category:environment", CLEANING),
    "security": DefaultRoute("category:security", SECURITY),
    "parking": DefaultRoute("category:parking", SECURITY),
    "noise": DefaultRoute("category:noise", SECURITY),
    "fees": DefaultRoute("category:fees", FINANCE),
    "staff_attitude": DefaultRoute("category:staff_attitude", CUSTOMER_SERVICE, "cs_supervisor"),
    "landscaping": DefaultRoute("category:landscaping", LANDSCAPING),
    "decoration": DefaultRoute("category:decoration", ENGINEERING),
}
FALLBACK_ROUTE = DefaultRoute("fallback", CUSTOMER_SERVICE, "cs_supervisor")


def default_route(case: RoutingInput) -> DefaultRoute:
    if case.grade == "major":
        return MAJOR_ROUTE
    return DEFAULT_BY_CATEGORY.get(case.category, FALLBACK_ROUTE)


def route(case: RoutingInput, rules: Iterable[RoutingRule]) -> RoutingDecision:
    """The tenant's best matching rule, else the platform default. Pure."""
    matching = [r for r in rules if r.matches(case)]
    if matching:
        best = max(matching, key=lambda r: (*r.rank(), -r.id))
        crit = best.criteria()
        on = ", ".join(f"{k}={v}" for k, v in crit.items()) or "any complaint"
        scope = "this project" if best.project_id else "the tenant"
        reason = f"{best.source} rule {best.id} of {scope} matched {on}"
        if best.note:
            reason += f" ({best.note})"
        return RoutingDecision(
            department=best.department,
            handler_role=best.handler_role,
            handler_staff_id=best.handler_staff_id,
            inform=best.inform,
            rule_id=f"tenant:{best.id}",
            reason=reason,
        )
    d = default_route(case)
    why = (
        "major complaints go to the management-office director"
        if d is MAJOR_ROUTE
        else f"default for category {case.category}"
        if d is not FALLBACK_ROUTE
        else f"no rule for category {case.category}: customer service decides"
    )
    return RoutingDecision(
        department=d.department,
        handler_role=d.handler_role,
        handler_staff_id=None,
        inform=d.inform,
        rule_id=f"default:{d.name}",
        reason=why,
    )


@dataclass(frozen=True, slots=True)
class Department:
    id: UUID
    code: str
    kind: str
    project_id: UUID | None  # None: tenant-wide department


def resolve_department(
    target: str, project_id: UUID, departments: Iterable[Department]
) -> Department | None:
    """The department a routing target names: by code, then by kind; the project's own
    department before a tenant-wide one (`propdesk.routing_targets`, which intake's
    onboarding checks use too)."""
    return routing_targets.resolve_department(
        target, project_id, departments, serves=_department_project
    )


def _department_project(department: Department) -> UUID | None:
    return department.project_id


@dataclass(frozen=True, slots=True)
class HintProblem:
    index: int
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ParsedHints:
    rules: list[RoutingRule] = field(default_factory=list)
    problems: list[HintProblem] = field(default_factory=list)


HINT_FIELDS = frozenset(
    {
        "category",
        "grade",
        "building",
        "place",
        "project_id",
        "project",
        "department",
        "handler_role",
        "handler_staff_id",
        "inform",
        "priority",
        "note",
    }
)


def parse_routing_hints(
    hints: Iterable[Mapping[str, object]], project_ids_by_code: Mapping[str, UUID]
) -> ParsedHints:
    """The onboarding file's `routing` list as rules; bad entries are reported, not fatal.

    Each entry: {category?, grade?, building?, place?, project? (code) | project_id?,
    department (code, required), handler_role?, handler_staff_id?, inform? [codes],
    priority? (int), note?}.
    """
    out = ParsedHints()
    for i, hint in enumerate(hints):
        unknown = set(hint) - HINT_FIELDS
        if unknown:
            out.problems.append(HintProblem(i, sorted(unknown)[0], "unknown field"))
            continue
        department = hint.get("department")
        if not isinstance(department, str) or not department:
            out.problems.append(HintProblem(i, "department", "required department code"))
            continue
        project_id: UUID | None = None
        if hint.get("project_id"):
            project_id = _uuid(hint["project_id"])
            if project_id is None:
                out.problems.append(HintProblem(i, "project_id", "not a UUID"))
                continue
        elif hint.get("project"):
            code = str(hint["project"])
            if code not in project_ids_by_code:
                out.problems.append(HintProblem(i, "project", f"unknown project {code}"))
                continue
            project_id = project_ids_by_code[code]
        staff = hint.get("handler_staff_id")
        staff_id = _uuid(staff) if staff else None
        if staff and staff_id is None:
            out.problems.append(HintProblem(i, "handler_staff_id", "not a UUID"))
            continue
        priority = hint.get("priority", 0)
        if not isinstance(priority, int):
            out.problems.append(HintProblem(i, "priority", "must be an integer"))
            continue
        inform = hint.get("inform") or []
        if not isinstance(inform, list):
            out.problems.append(HintProblem(i, "inform", "must be a list of department codes"))
            continue
        out.rules.append(
            RoutingRule(
                id=i,
                department=department,
                category=_opt_str(hint.get("category")),
                grade=_opt_str(hint.get("grade")),
                building=_opt_str(hint.get("building")),
                place=_opt_str(hint.get("place")),
                project_id=project_id,
                handler_role=_opt_str(hint.get("handler_role")),
                handler_staff_id=staff_id,
                inform=tuple(str(x) for x in inform),
                priority=priority,
                note=str(hint.get("note") or ""),
                source="onboarding",
            )
        )
    return out


def _opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None
