"""The onboarding document (YAML or JSON) and its parser, which names the line and field at
fault. Shape (deploy/demo/company.yaml is one):

    tenant: {code: DEMO, name: 示范物业有限公司, settings: {}, rules: {}}
    projects:
      - {code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
         buildings: [{code: "1", name: 1号楼, units: ["101", "102"]}]}
    departments: [{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}]
    staff: [{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}]
    routing:      # dispatch's rules for the tenant, by codes of this document
      - {category: fees, department: cs, project: SUNRISE, handler_staff: S001, note: 前台先答复}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from intake.domain.rules import RulesError, TenantRules
from intake.domain.vocabulary import Category, Grade
from propdesk.auth.roles import Role
from propdesk.events.contracts.tenant import IanaTimeZoneName
from propdesk.routing_targets import resolve_department
from propdesk.service.input_types import JSON_INT, JsonBool
from propdesk.service.text import NO_NUL_MESSAGE, NO_NUL_RULE, NoNul


def _code_from_scalar(value: Any) -> Any:
    # YAML reads `101` and `1` as integers; a unit or building code is a string.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Code = Annotated[
    str,
    BeforeValidator(_code_from_scalar),
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"),
]


def _not_an_id(value: str) -> str:
    # A project is named by its code or its UUID wherever a reference is taken (the API's
    # `project`, Open311's jurisdiction_id): a code that reads as a UUID could not be told
    # from an id.
    try:
        UUID(value)
    except ValueError:
        return value
    raise PydanticCustomError(
        "project_code_like_uuid",
        "a project code must not read as a UUID: projects are named by code or by id",
    )


ProjectCode = Annotated[Code, AfterValidator(_not_an_id)]
Name = Annotated[
    str, BeforeValidator(_code_from_scalar), Field(min_length=1, max_length=200), NoNul
]


# What dispatch assigns by (a complaint's category among a handler's skills).
Skill = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), NoNul]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantDoc(_Strict):
    code: Code
    name: Name
    settings: dict[str, Any] = Field(default_factory=dict)
    rules: dict[str, Any] = Field(default_factory=dict)


class BuildingDoc(_Strict):
    code: Code
    name: Name | None = None
    units: list[Code] = Field(default_factory=list, max_length=5000)


class ProjectDoc(_Strict):
    code: ProjectCode
    name: Name
    city: str | None = None
    time_zone: IanaTimeZoneName = "Asia/Shanghai"
    calendar: str = Field(default="cn", min_length=1, max_length=64)
    buildings: list[BuildingDoc] = Field(default_factory=list, max_length=1000)


class DepartmentDoc(_Strict):
    code: Code
    name: Name
    kind: str = Field(min_length=1, max_length=64)
    project: Code | None = None


class StaffDoc(_Strict):
    code: Code
    name: Name
    roles: list[Role] = Field(min_length=1)
    department: Code | None = None
    projects: list[Code] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list, max_length=100)
    active: JsonBool = True  # true/false, not "yes" in quotes (text)

    @field_validator("roles")
    @classmethod
    def _no_operator(cls, value: list[Role]) -> list[Role]:
        if Role.OPERATOR in value:
            raise ValueError("the operator role belongs to the platform, not to a company")
        return value


class RoutingDoc(_Strict):
    """One routing rule for dispatch: what it matches (any of category, grade, building,
    place; optionally one project of this document) and where it sends the complaint (a
    department of this document, by code or kind; optionally a handler role or one staff
    member of this document, and departments to inform)."""

    department: Code
    category: Category | None = None
    grade: Grade | None = None
    building: Code | None = None
    place: str | None = Field(default=None, min_length=1, max_length=100)
    project: Code | None = None
    handler_role: Role | None = None
    handler_staff: Code | None = None
    inform: list[Code] = Field(default_factory=list, max_length=20)
    priority: Annotated[int, Field(ge=-1000, le=1000), JSON_INT] = 0
    note: str = Field(default="", max_length=1000)

    def as_stored(self) -> dict[str, Any]:
        """The entry as the tenant keeps it (codes, defaults left out)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class CompanyDocument(_Strict):
    tenant: TenantDoc
    projects: list[ProjectDoc] = Field(default_factory=list)
    departments: list[DepartmentDoc] = Field(default_factory=list)
    staff: list[StaffDoc] = Field(default_factory=list)
    routing: list[RoutingDoc] = Field(default_factory=list, max_length=500)


@dataclass(frozen=True, slots=True)
class DocumentIssue:
    field: str  # dotted path, e.g. "projects[0].time_zone"
    rule: str
    message: str
    line: int | None = None
    column: int | None = None

    def as_field_error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


class DocumentError(ValueError):
    def __init__(self, issues: Sequence[DocumentIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(str(i) for i in issues))


def _path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(root: yaml.Node | None, loc: Sequence[str | int]) -> yaml.Node | None:
    """The deepest node of the composed YAML tree along `loc` (for its line number).

    Constructing the document merges each `<<` into its mapping in place, the merged pairs
    first: the last pair of a key is the one the document holds (a mapping's own key over
    a merged one), so the search runs from the end."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next(
                (
                    v
                    for k, v in reversed(node.value)
                    if isinstance(k, yaml.ScalarNode) and k.value == part
                ),
                None,
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if 0 <= part < len(node.value) else None
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
    return node


def _issue(
    root: yaml.Node | None, loc: Sequence[str | int], rule: str, message: str
) -> DocumentIssue:
    node = _node_at(root, loc)
    line = node.start_mark.line + 1 if node is not None else None
    column = node.start_mark.column + 1 if node is not None else None
    return DocumentIssue(_path(loc) or "document", rule, message, line, column)


# The largest document parsed (`propdesk onboard`; the API's body limit, 256 KiB by
# default, comes first there).
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
# Levels of mappings and sequences, an alias counting as what it stands for (a real
# document needs 7: projects, a project, buildings, a building, units, a unit). PyYAML
# composes and constructs a level per call: a deeper document would exhaust the stack, and
# a `settings` map deeper than 254 could not be stored as JSON.
MAX_DEPTH = 32
# Nodes that aliases may add to the document (the same building's units under many
# buildings), so a few kilobytes of aliases of aliases cannot stand for billions of nodes.
# About what the largest body onboarding takes (5 MB) could hold written out, at a few
# bytes a node: aliases make a document shorter, never larger than it could be. (At
# 100,000, 300 buildings sharing one list of 400 units were refused, while the same
# document written out was taken.) Counted while composing, before anything is built.
MAX_ALIASED_NODES = 1_000_000


class _PythonEvents(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own scanner and parser (pure Python: about 20 s a megabyte)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser as _Events  # libyaml's (C), the same events
else:  # a PyYAML built without libyaml
    _Events = _PythonEvents


class _Bounds(yaml.composer.Composer):
    """Composing that refuses, before any deep recursion, a document nested deeper than
    MAX_DEPTH or whose aliases expand beyond MAX_ALIASED_NODES. Composed in Python
    whichever parser made the events: the bounds hook into composing."""

    def __init__(self) -> None:
        yaml.composer.Composer.__init__(self)
        self._level = 0
        self._aliased = 0
        # Per composed node (by id; the tree keeps them alive): its height and its size,
        # aliases expanded.
        self._extent: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._level += 1
        try:
            event = self.peek_event()
            if self._level > MAX_DEPTH:
                raise _limit_error(event.start_mark, "max_depth", _DEPTH_MESSAGE)
            node: yaml.Node = super().compose_node(parent, index)
            if isinstance(event, yaml.AliasEvent):
                if id(node) not in self._extent:  # still being composed: it holds itself
                    raise _limit_error(
                        event.start_mark,
                        "max_depth",
                        "an alias must not stand for a node that holds it",
                    )
                height, size = self._extent[id(node)]
                if self._level + height - 1 > MAX_DEPTH:
                    raise _limit_error(event.start_mark, "max_depth", _DEPTH_MESSAGE)
                self._aliased += size
                if self._aliased > MAX_ALIASED_NODES:
                    raise _limit_error(
                        event.start_mark,
                        "max_aliased_nodes",
                        f"aliases may stand for at most {MAX_ALIASED_NODES} nodes in all",
                    )
                return node
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            extents = [self._extent[id(child)] for child in children]
            self._extent[id(node)] = (
                1 + max((h for h, _ in extents), default=0),
                1 + sum(n for _, n in extents),
            )
            return node
        finally:
            self._level -= 1


def _bounded_loader(events: type) -> type:
    """A safe loader composing with `_Bounds` from the events of `events`."""

    class BoundedLoader(_Bounds, events, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc,valid-type]
        def __init__(self, stream: str) -> None:
            events.__init__(self, stream)
            _Bounds.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return BoundedLoader


_BoundedLoader = _bounded_loader(_Events)

_DEPTH_MESSAGE = f"mappings and sequences may nest at most {MAX_DEPTH} deep"


def _limit_error(mark: yaml.Mark, rule: str, message: str) -> DocumentError:
    return DocumentError([DocumentIssue("document", rule, message, mark.line + 1, mark.column + 1)])


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(root: yaml.Node | None) -> list[DocumentIssue]:
    """Keys given twice in one mapping. YAML forbids them and PyYAML would keep the last in
    silence (a second `tenant:` would onboard another company); a key given by a merge
    (`<<: *base`) may still be overridden."""
    issues: list[DocumentIssue] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())] if root else []
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:  # an alias: its node is checked where it is defined
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*loc, i)) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                name: str | int = key.value if isinstance(key, yaml.ScalarNode) else "[key]"
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    earlier = first.setdefault((key.tag, key.value), key)
                    if earlier is not key:
                        issues.append(
                            DocumentIssue(
                                _path((*loc, key.value)),
                                "duplicate_key",
                                f"key {key.value!r} appears twice in this mapping (first on"
                                f" line {earlier.start_mark.line + 1}): give it once",
                                key.start_mark.line + 1,
                                key.start_mark.column + 1,
                            )
                        )
                stack.append((value, (*loc, name)))
    return sorted(issues, key=lambda i: (i.line or 0, i.column or 0))


def _json_value_issues(
    value: Any, loc: tuple[str | int, ...], root: yaml.Node | None
) -> list[DocumentIssue]:
    """What JSON (and so the database's jsonb and the events) cannot carry in a free-form
    mapping (`settings`, `rules`): YAML's dates, timestamps, binary, sets, .nan and .inf,
    keys that are not strings, and the NUL character."""
    if value is None or isinstance(value, bool | int):
        return []
    if isinstance(value, str):
        if "\x00" in value:
            return [_issue(root, loc, NO_NUL_RULE, NO_NUL_MESSAGE)]
        return []
    if isinstance(value, float):
        if math.isfinite(value):
            return []
        return [_issue(root, loc, "json_value", "must be a finite number (JSON has no NaN)")]
    if isinstance(value, list):
        return [
            i for n, item in enumerate(value) for i in _json_value_issues(item, (*loc, n), root)
        ]
    if isinstance(value, dict):
        issues: list[DocumentIssue] = []
        for key, item in value.items():
            if not isinstance(key, str):
                issues.append(_issue(root, loc, "json_value", f"key {key!r} must be a string"))
                continue
            if "\x00" in key:
                issues.append(_issue(root, (*loc, key), NO_NUL_RULE, NO_NUL_MESSAGE))
                continue
            issues += _json_value_issues(item, (*loc, key), root)
        return issues
    return [
        _issue(
            root,
            loc,
            "json_value",
            f"a {type(value).__name__} is not a JSON value: quote it, or give a string,"
            " number, true/false, null, list or mapping",
        )
    ]


def parse_document(source: str | bytes) -> CompanyDocument:
    """Parse and validate an onboarding document; `DocumentError` names line and field."""
    size = len(source) if isinstance(source, bytes) else len(source.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        # Composing and validating are Python (seconds a megabyte, minutes without libyaml):
        # a bound, not a wait.
        raise DocumentError(
            [
                DocumentIssue(
                    "document",
                    "max_bytes",
                    f"{size} bytes: a document holds at most {MAX_DOCUMENT_BYTES}"
                    " (split a larger company into several documents of its projects)",
                )
            ]
        )
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        # Composed once: the tree gives line numbers; duplicate keys are looked for before
        # constructing, which merges each `<<` into its mapping's keys.
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
            duplicates = _duplicate_keys(root)
            if duplicates:
                raise DocumentError(duplicates)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and "maximum nesting depth" in (exc.problem or ""):
            # libyaml scans ahead and stops at its own bound (1,000 levels) before the
            # composer reaches MAX_DEPTH: the same refusal.
            raise _limit_error(mark, "max_depth", _DEPTH_MESSAGE) from None
        raise DocumentError(
            [
                DocumentIssue(
                    "document",
                    "yaml",
                    f"{exc.problem or 'invalid YAML'}"
                    + (f" ({exc.context})" if exc.context else ""),
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentError([DocumentIssue("document", "yaml", str(exc))]) from None
    return validate_document(data, root)


def validate_document(data: Any, root: yaml.Node | None = None) -> CompanyDocument:
    if not isinstance(data, dict):
        raise DocumentError(
            [_issue(root, (), "type", "the document must be a mapping with a `tenant` key")]
        )
    try:
        doc = CompanyDocument.model_validate(data)
    except ValidationError as exc:
        issues = [
            _issue(root, err["loc"], err["type"], err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]
        raise DocumentError(issues) from None
    issues = [
        *_json_value_issues(doc.tenant.settings, ("tenant", "settings"), root),
        *_json_value_issues(doc.tenant.rules, ("tenant", "rules"), root),
    ]
    if issues:
        raise DocumentError(issues)
    issues = _cross_reference_issues(doc, root)
    if issues:
        raise DocumentError(issues)
    return doc


# Roles no one on a department's roster has: a rule preferring them could never match.
_NOT_STAFF_ROLES = frozenset({Role.OPERATOR, Role.INTEGRATION})


def _department_for(
    target: str, project: str, departments: Sequence[DepartmentDoc]
) -> DepartmentDoc | None:
    """The department a routing target names in `project`, as dispatch resolves it."""
    return resolve_department(target, project, departments, serves=_department_project)


def _department_project(department: DepartmentDoc) -> str | None:
    return department.project


def _routing_issues(doc: CompanyDocument, i: int, root: yaml.Node | None) -> list[DocumentIssue]:
    """What makes routing entry `i` (its references known) one dispatch could not follow:
    a handler role no staff member has, a department informed twice, a named handler who
    would never receive what it routes (dispatch hands an order to him only as staff of
    the department the entry resolves to in the complaint's project, else ignores him)."""
    r = doc.routing[i]
    issues: list[DocumentIssue] = []
    if r.handler_role in _NOT_STAFF_ROLES:
        issues.append(
            _issue(root, ("routing", i, "handler_role"), "enum", "must be a staff member's role")
        )
    if len(set(r.inform)) != len(r.inform):
        issues.append(
            _issue(root, ("routing", i, "inform"), "unique", "each department at most once")
        )
    if r.handler_staff is not None:
        member = next(m for m in doc.staff if m.code == r.handler_staff)
        where = ("routing", i, "handler_staff")
        if r.project is not None and r.project not in member.projects:
            issues.append(
                _issue(root, where, "covers_project", f"{member.code} does not work on {r.project}")
            )
        elif not any(
            (d := _department_for(r.department, p, doc.departments)) is not None
            and d.code == member.department
            for p in ([r.project] if r.project is not None else member.projects)
        ):
            issues.append(
                _issue(
                    root,
                    where,
                    "in_department",
                    f"{member.code} is not staff of the department {r.department!r} routes to",
                )
            )
    return issues


def _cross_reference_issues(doc: CompanyDocument, root: yaml.Node | None) -> list[DocumentIssue]:
    issues: list[DocumentIssue] = []

    def duplicates(kind: str, codes: list[str], loc_of: Any) -> None:
        seen: set[str] = set()
        for i, code in enumerate(codes):
            if code in seen:
                issues.append(_issue(root, loc_of(i), "unique", f"{kind} {code!r} appears twice"))
            seen.add(code)

    project_codes = {p.code for p in doc.projects}
    department_codes = {d.code for d in doc.departments}
    duplicates("project", [p.code for p in doc.projects], lambda i: ("projects", i, "code"))
    duplicates(
        "department", [d.code for d in doc.departments], lambda i: ("departments", i, "code")
    )
    duplicates("staff member", [s.code for s in doc.staff], lambda i: ("staff", i, "code"))
    for pi, p in enumerate(doc.projects):
        duplicates(
            "building",
            [b.code for b in p.buildings],
            lambda i, pi=pi: ("projects", pi, "buildings", i, "code"),
        )
        for bi, b in enumerate(p.buildings):
            duplicates(
                "unit",
                list(b.units),
                lambda i, pi=pi, bi=bi: ("projects", pi, "buildings", bi, "units", i),
            )
    for i, d in enumerate(doc.departments):
        if d.project is not None and d.project not in project_codes:
            issues.append(
                _issue(
                    root,
                    ("departments", i, "project"),
                    "reference",
                    f"unknown project {d.project!r} (not in `projects`)",
                )
            )
    for i, s in enumerate(doc.staff):
        if s.department is not None and s.department not in department_codes:
            issues.append(
                _issue(
                    root,
                    ("staff", i, "department"),
                    "reference",
                    f"unknown department {s.department!r} (not in `departments`)",
                )
            )
        for j, code in enumerate(s.projects):
            if code not in project_codes:
                issues.append(
                    _issue(
                        root,
                        ("staff", i, "projects", j),
                        "reference",
                        f"unknown project {code!r} (not in `projects`)",
                    )
                )
    # A routing entry names what this document lists: a department by code or kind (dispatch
    # matches either), a project and a staff member by code.
    department_names = department_codes | {d.kind for d in doc.departments}
    staff_codes = {s.code for s in doc.staff}
    for i, r in enumerate(doc.routing):
        references: list[tuple[tuple[str | int, ...], str | None, set[str], str]] = [
            (("department",), r.department, department_names, "departments` by code or kind"),
            (("project",), r.project, project_codes, "projects`"),
            (("handler_staff",), r.handler_staff, staff_codes, "staff`"),
        ]
        references += [
            (("inform", j), code, department_names, "departments` by code or kind")
            for j, code in enumerate(r.inform)
        ]
        unknown = [
            _issue(
                root, ("routing", i, *where), "reference", f"unknown {code!r} (not in `{listed})"
            )
            for where, code, known, listed in references
            if code is not None and code not in known
        ]
        issues += unknown or _routing_issues(doc, i, root)
    try:
        TenantRules.from_written_overrides(doc.tenant.rules or None)
    except RulesError as exc:
        for v in exc.violations:
            # v.field is "rules.<field>..."; point at the rules mapping's own key when we can.
            parts: list[str | int] = ["tenant", *v.field.split(".")]
            issues.append(_issue(root, parts, v.rule, v.message))
    return issues
