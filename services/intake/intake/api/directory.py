"""`/v1/projects`, `/v1/departments`, `/v1/staff`: read back what onboarding loaded.

Who may read: projects and departments, any staff role of the tenant and an API key (a
call center needs the project codes: Open311's `jurisdiction_id` is one); staff, the
supervisor-type roles (`STAFF_READ_ROLES`). An operator token (no tenant) is refused, as on
every tenant read of intake.

What a credential sees is decided by the database: every query runs in the caller's
tenant context, so another tenant's projects, and for a credential limited to some
projects the other projects (with their buildings, units and departments), do not exist:
`GET /v1/projects/{project}` answers the same 404 `project-not-found` for them as for a
project that does not exist. Departments of every project (no project) serve each project
and are listed for everyone. Staff are seen by a credential limited to some projects when
they serve one of its projects or every project (the policy reads each member's list of
projects), each member's `projects` only as the codes it may see.

A project is named by its UUID or its code. Lists are ordered by code, at most `limit`
(≤ 1000) items an answer, with `next_cursor` for the next page (`?cursor=`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from sqlalchemy import Row
from starlette.requests import Request
from starlette.responses import Response

from intake.api.deps import STAFF_READ_ROLES, sessions_of
from intake.store import directory as store
from propdesk.auth.dependencies import require_staff
from propdesk.auth.roles import Role
from propdesk.db.session import tenant_transaction
from propdesk.service.input_types import QueryBool
from propdesk.service.problems import ProblemError, invalid
from propdesk.service.text import NoNul
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1", tags=["directory"])

MAX_CODE = 64  # the onboarding document's limit (`onboarding.document.Code`)
MAX_LIMIT = 1000
# Whole strings only (`fullmatch`: `$` would let a trailing newline through).
CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # as `onboarding.document.Code`
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
UUID_SHAPE_RE = re.compile(r"[^-]{8}-[^-]{4}-[^-]{4}-[^-]{4}-[^-]{12}")


def _code(value: str) -> str:
    if not CODE_RE.fullmatch(value):
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "a code: letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return value


def _project_ref(value: str) -> str:
    if UUID_RE.fullmatch(value):
        return value
    if UUID_SHAPE_RE.fullmatch(value):
        raise PydanticCustomError(
            "uuid_parsing",
            "shaped like a UUID but not one (hexadecimal digits only); a project is named "
            "by its UUID or its code",
        )
    if not CODE_RE.fullmatch(value):
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "a project's UUID or code (letters, digits, '_', '.' and '-', starting with a "
            "letter or digit)",
        )
    return value


# NUL first (`no_nul`, as everywhere in intake), then the shape.
DepartmentQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_CODE, description="A department's code: its members."),
    NoNul,
    AfterValidator(_code),
]
BuildingQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_CODE, description="A building's code: its units."),
    NoNul,
    AfterValidator(_code),
]
ProjectQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CODE,
        description="A project's UUID or code; only what serves that project.",
    ),
    NoNul,
    AfterValidator(_project_ref),
]
ProjectPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_CODE, description="The project's UUID or its code."),
    NoNul,
    AfterValidator(_project_ref),
]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of a page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]


def _as_ref(value: str) -> UUID | str:
    """A validated project reference as the store takes it: an id or a code."""
    return UUID(value) if UUID_RE.fullmatch(value) else value


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _encode_cursor(*codes: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(codes))).rstrip(b"=").decode()


def _decode_cursor(cursor: str | None) -> str | None:
    """The code a page ends with; 422 `query.cursor` for anything this API did not give."""
    codes = _decode_codes(cursor, 1)
    return codes[0] if codes else None


def _decode_codes(cursor: str | None, n: int) -> tuple[str, ...] | None:
    """The `n` codes a page ends with (a unit page: building and unit); 422 `query.cursor`
    for anything this API did not give."""
    if cursor is None:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        value = None
    if (
        isinstance(value, list)
        and len(value) == n
        and all(
            isinstance(code, str) and len(code) <= MAX_CODE and CODE_RE.fullmatch(code)
            for code in value
        )
    ):
        return tuple(value)
    raise invalid(
        "query.cursor",
        "format",
        "not a cursor this API returned",
        detail="query.cursor: not a cursor this API returned",
    )


def _page(items: list[dict[str, Any]], rows: list[Row], limit: int) -> dict[str, Any]:
    """The first `limit` items; a cursor when the query found one more."""
    more = len(rows) > limit
    return {
        "items": items[:limit],
        "next_cursor": _encode_cursor(rows[limit - 1].code) if more else None,
    }


def _project_not_found(ref: str) -> ProblemError:
    # The same answer whether the project is another tenant's, outside the caller's
    # projects, or does not exist: existence is not revealed.
    return ProblemError(404, "Not Found", code="project-not-found", detail=f"No project {ref!r}.")


def _project(r: Row) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "code": r.code,
        "name": r.name,
        "city": r.city,
        "time_zone": r.time_zone,
        "calendar": r.calendar,
        "building_count": r.building_count,
        "unit_count": r.unit_count,
    }


def _department(r: Row) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "code": r.code,
        "name": r.name,
        "kind": r.kind,
        "project": r.project_code,  # None: a department of every project
    }


@router.get("/projects")
async def list_projects(
    request: Request,
    ctx: TenantContext = require_staff(),
    cursor: Cursor = None,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """The projects the credential may see (a credential limited to some projects: those),
    by code, with their number of buildings and units."""
    after = _decode_cursor(cursor)
    async with tenant_transaction(sessions_of(request), ctx) as s:
        rows = await store.list_projects(s, after=after, limit=limit + 1)
    return _json(_page([_project(r) for r in rows], rows, limit))


@router.get("/projects/{project}")
async def get_project(
    request: Request, project: ProjectPath, ctx: TenantContext = require_staff()
) -> Response:
    """One project by UUID or code: its buildings (with their number of units; the units
    themselves, paged: `/v1/projects/{project}/units`) and the departments that serve it
    (its own and the company-wide ones)."""
    async with tenant_transaction(sessions_of(request), ctx) as s:
        row = await store.get_project(s, _as_ref(project))
        if row is None:
            raise _project_not_found(project)
        building_rows = await store.project_buildings(s, row.id)
        department_rows = await store.list_departments(s, serving=row.id, after=None, limit=None)
    return _json(
        {
            **_project(row),
            "buildings": [
                {"code": b.code, "name": b.name, "unit_count": b.unit_count} for b in building_rows
            ],
            "departments": [_department(d) for d in department_rows],
        }
    )


@router.get("/projects/{project}/units")
async def list_project_units(
    request: Request,
    project: ProjectPath,
    ctx: TenantContext = require_staff(),
    building: BuildingQuery = None,
    cursor: Cursor = None,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """The project's units by building and unit code (a project may have hundreds of
    thousands: paged); `building`: one building's."""
    after = _decode_codes(cursor, 2)
    async with tenant_transaction(sessions_of(request), ctx) as s:
        row = await store.get_project(s, _as_ref(project))
        if row is None:
            raise _project_not_found(project)
        rows = await store.project_units(s, row.id, building=building, after=after, limit=limit + 1)
    more = len(rows) > limit
    return _json(
        {
            "items": [{"building": r.building, "code": r.code} for r in rows[:limit]],
            "next_cursor": _encode_cursor(rows[limit - 1].building, rows[limit - 1].code)
            if more
            else None,
        }
    )


@router.get("/departments")
async def list_departments(
    request: Request,
    ctx: TenantContext = require_staff(),
    project: ProjectQuery = None,
    cursor: Cursor = None,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """Departments by code, each with its project's code (null: it serves every project).
    `project`: those that serve it (its own and the company-wide ones); an unknown project,
    or one the credential may not see, lists nothing."""
    after = _decode_cursor(cursor)
    async with tenant_transaction(sessions_of(request), ctx) as s:
        serving = None
        if project is not None:
            found = await store.get_project(s, _as_ref(project))
            if found is None:
                return _json({"items": [], "next_cursor": None})
            serving = found.id
        rows = await store.list_departments(s, serving=serving, after=after, limit=limit + 1)
    return _json(_page([_department(r) for r in rows], rows, limit))


@router.get("/staff")
async def list_staff(
    request: Request,
    ctx: TenantContext = require_staff(*STAFF_READ_ROLES),
    project: ProjectQuery = None,
    department: DepartmentQuery = None,
    role: Annotated[Role | None, Query(description="Members holding this role.")] = None,
    active: QueryBool | None = None,
    cursor: Cursor = None,
    limit: Limit = 200,
) -> Response:
    """Staff by code: roles, department code, project codes (null: every project), active.
    `project`: those of that project and those of every project; `department`: its
    members. A project or department unknown, or not visible to the credential, lists
    nothing."""
    after = _decode_cursor(cursor)
    async with tenant_transaction(sessions_of(request), ctx) as s:
        project_id = department_id = None
        if project is not None:
            found = await store.get_project(s, _as_ref(project))
            if found is None:
                return _json({"items": [], "next_cursor": None})
            project_id = found.id
        if department is not None:
            department_id = await store.department_id_by_code(s, department)
            if department_id is None:
                return _json({"items": [], "next_cursor": None})
        rows = await store.list_staff(
            s,
            project_id=project_id,
            department_id=department_id,
            role=role.value if role else None,
            active=active,
            after=after,
            limit=limit + 1,
        )
        codes = await store.project_codes(s)
    items = [
        {
            "id": str(r.id),
            "code": r.code,
            "name": r.name,
            "roles": list(r.roles),
            "department": r.department_code,
            # null: a member of every project; otherwise the codes the caller may see.
            "projects": sorted(codes[p] for p in r.project_ids if p in codes)
            if r.project_ids
            else None,
            "active": r.active,
        }
        for r in rows
    ]
    return _json(_page(items, rows, limit))
