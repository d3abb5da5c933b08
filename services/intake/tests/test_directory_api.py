"""`/v1/projects`, `/v1/departments`, `/v1/staff`: what onboarding loaded, read back within
the caller's tenant and projects (row-level security), with bad input a 422 naming the
field and the rule."""

from __future__ import annotations

import base64
from uuid import uuid4

import orjson
import pytest

from intake.onboarding.apply import apply_document
from intake.onboarding.document import parse_document
from intake.store.tenants import project_ids_by_codes
from propdesk.auth.tokens import issue_token
from propdesk.db.session import tenant_transaction
from propdesk.tenancy import TenantContext

from .conftest import Company, make_key

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIRECTORY = """
tenant: {code: DIRA, name: 目录物业, settings: {}}
projects:
  - {code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{code: "1", name: 1号楼, units: ["101", "102", "201"]},
                 {code: "2", name: 2号楼, units: ["101"]}]}
  - {code: MOON, name: 月亮湾, city: 乌鲁木齐, time_zone: Asia/Urumqi, calendar: cn,
     buildings: [{code: A, name: A座, units: ["1A", "2A"]}]}
  - {code: ZETA, name: 泽塔苑, time_zone: Asia/Shanghai, calendar: cn}
departments:
  - {code: mgmt, name: 管理处, kind: management}
  - {code: quality, name: 品质部, kind: quality}
  - {code: cs, name: 客服中心, kind: customer_service, project: SUNRISE}
  - {code: eng, name: 工程部, kind: engineering, project: SUNRISE}
  - {code: moon-cs, name: 月亮湾客服中心, kind: customer_service, project: MOON}
staff:
  - {code: S000, name: 赵立新, roles: [tenant_admin], department: quality}
  - {code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}
  - {code: S002, name: 陈刚, roles: [handler], department: eng, projects: [SUNRISE]}
  - {code: S003, name: 刘洋, roles: [department_head], department: eng, projects: [SUNRISE]}
  - {code: S101, name: 郭婷, roles: [intake_clerk], department: moon-cs, projects: [MOON]}
  - {code: S102, name: 高峰, roles: [cs_supervisor, handler], department: moon-cs,
     projects: [SUNRISE, MOON]}
  - {code: S900, name: 钱国华, roles: [director], department: mgmt}
  - {code: S950, name: 离职者, roles: [handler], department: eng, projects: [SUNRISE],
     active: false}
"""

# A second company with a project of the same code: codes are per tenant.
OTHER = """
tenant: {code: DIRB, name: 乙目录物业, settings: {}}
projects:
  - {code: SUNRISE, name: 乙花园, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{code: "9", name: 9号楼, units: ["901"]}]}
departments:
  - {code: b-cs, name: 乙客服, kind: customer_service, project: SUNRISE}
staff:
  - {code: B001, name: 乙员工, roles: [intake_clerk], department: b-cs, projects: [SUNRISE]}
"""


async def _onboard(resources, source: str, code: str) -> Company:
    report = await apply_document(resources.sessions, parse_document(source), actor="test")
    async with tenant_transaction(
        resources.sessions, TenantContext.for_tenant(report.tenant_id)
    ) as s:
        projects = await project_ids_by_codes(s, ["SUNRISE", "MOON", "ZETA"])
    return Company(code, report.tenant_id, projects, resources.settings)


@pytest.fixture(scope="module")
async def dir_a(resources) -> Company:
    return await _onboard(resources, DIRECTORY, "DIRA")


@pytest.fixture(scope="module")
async def dir_b(resources) -> Company:
    return await _onboard(resources, OTHER, "DIRB")


def _codes(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [item["code"] for item in r.json()["items"]]


def _problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    return body


# --- projects -------------------------------------------------------------------------


async def test_lists_the_companys_projects_by_code(client, dir_a):
    r = await client.get("/v1/projects", headers=dir_a.token("intake_clerk"))
    assert _codes(r) == ["MOON", "SUNRISE", "ZETA"]
    by_code = {p["code"]: p for p in r.json()["items"]}
    assert by_code["SUNRISE"] == {
        "id": str(dir_a.projects["SUNRISE"]),
        "code": "SUNRISE",
        "name": "阳光花园",
        "city": "上海",
        "time_zone": "Asia/Shanghai",
        "calendar": "cn",
        "building_count": 2,
        "unit_count": 4,
    }
    assert (by_code["MOON"]["time_zone"], by_code["MOON"]["building_count"]) == (
        "Asia/Urumqi",
        1,
    )
    assert by_code["MOON"]["unit_count"] == 2
    assert by_code["ZETA"]["city"] is None
    assert (by_code["ZETA"]["building_count"], by_code["ZETA"]["unit_count"]) == (0, 0)
    assert r.json()["next_cursor"] is None


async def test_reads_a_project_by_code_and_by_uuid(client, dir_a):
    handler = dir_a.token("handler")
    by_code = await client.get("/v1/projects/SUNRISE", headers=handler)
    assert by_code.status_code == 200, by_code.text
    by_id = await client.get(f"/v1/projects/{dir_a.projects['SUNRISE']}", headers=handler)
    upper = str(dir_a.projects["SUNRISE"]).upper()
    by_upper_id = await client.get(f"/v1/projects/{upper}", headers=handler)
    assert by_code.json() == by_id.json() == by_upper_id.json()
    body = by_code.json()
    assert body["id"] == str(dir_a.projects["SUNRISE"])
    assert (body["building_count"], body["unit_count"]) == (2, 4)
    assert body["buildings"] == [
        {"code": "1", "name": "1号楼", "unit_count": 3},
        {"code": "2", "name": "2号楼", "unit_count": 1},
    ]
    # Its own departments and the company's (no project); not MOON's.
    assert [(d["code"], d["project"]) for d in body["departments"]] == [
        ("cs", "SUNRISE"),
        ("eng", "SUNRISE"),
        ("mgmt", None),
        ("quality", None),
    ]
    assert {"id", "code", "name", "kind", "project"} == set(body["departments"][0])
    empty = await client.get("/v1/projects/ZETA", headers=handler)
    assert empty.json()["buildings"] == []
    assert [d["code"] for d in empty.json()["departments"]] == ["mgmt", "quality"]


async def test_an_api_key_reads_projects_and_departments(client, resources, dir_a):
    key = await make_key(resources, dir_a)
    assert _codes(await client.get("/v1/projects", headers=key)) == ["MOON", "SUNRISE", "ZETA"]
    r = await client.get("/v1/projects/MOON", headers=key)
    assert r.status_code == 200 and r.json()["code"] == "MOON"
    assert "moon-cs" in _codes(await client.get("/v1/departments", headers=key))


async def test_a_project_limited_credential_sees_only_its_projects(client, resources, dir_a):
    moon_token = dir_a.token("cs_supervisor", projects=["MOON"])
    moon_key = await make_key(resources, dir_a, projects=["MOON"])
    for moon in (moon_token, moon_key):
        assert _codes(await client.get("/v1/projects", headers=moon)) == ["MOON"]
        assert (await client.get("/v1/projects/MOON", headers=moon)).status_code == 200
        for ref in ("SUNRISE", str(dir_a.projects["SUNRISE"]), "ZETA", "NOWHERE", str(uuid4())):
            r = await client.get(f"/v1/projects/{ref}", headers=moon)
            # The same answer as for a project that does not exist.
            body = _problem(r, 404, "project-not-found")
            assert body["detail"] == f"No project {ref!r}."
        assert _codes(await client.get("/v1/departments", headers=moon)) == [
            "mgmt",
            "moon-cs",
            "quality",
        ]
        other = await client.get("/v1/departments", params={"project": "SUNRISE"}, headers=moon)
        assert _codes(other) == []
    both = dir_a.token("intake_clerk", projects=["SUNRISE", "MOON"])
    assert _codes(await client.get("/v1/projects", headers=both)) == ["MOON", "SUNRISE"]


async def test_projects_page_by_cursor(client, dir_a):
    admin = dir_a.token("tenant_admin")
    first = await client.get("/v1/projects", params={"limit": 2}, headers=admin)
    assert _codes(first) == ["MOON", "SUNRISE"]
    cursor = first.json()["next_cursor"]
    assert cursor
    rest = await client.get("/v1/projects", params={"limit": 2, "cursor": cursor}, headers=admin)
    assert _codes(rest) == ["ZETA"]
    assert rest.json()["next_cursor"] is None


# --- isolation between tenants --------------------------------------------------------


async def test_another_tenant_sees_nothing_of_the_first(client, resources, dir_a, dir_b):
    b_admin = dir_b.token("tenant_admin")
    b_key = await make_key(resources, dir_b)
    for b in (b_admin, b_key):
        listed = await client.get("/v1/projects", headers=b)
        assert _codes(listed) == ["SUNRISE"]
        assert listed.json()["items"][0]["id"] == str(dir_b.projects["SUNRISE"])
        assert listed.json()["items"][0]["id"] != str(dir_a.projects["SUNRISE"])
        # Its own SUNRISE, by code; the first tenant's projects by UUID or code: 404.
        own = await client.get("/v1/projects/SUNRISE", headers=b)
        assert own.json()["id"] == str(dir_b.projects["SUNRISE"])
        assert [x["code"] for x in own.json()["buildings"]] == ["9"]
        assert [d["code"] for d in own.json()["departments"]] == ["b-cs"]
        for ref in (*(str(p) for p in dir_a.projects.values()), "MOON", "ZETA"):
            _problem(await client.get(f"/v1/projects/{ref}", headers=b), 404, "project-not-found")
            deps = await client.get("/v1/departments", params={"project": ref}, headers=b)
            assert _codes(deps) == []
        assert _codes(await client.get("/v1/departments", headers=b)) == ["b-cs"]
    staff = await client.get("/v1/staff", headers=b_admin)
    assert _codes(staff) == ["B001"]
    for ref in (str(dir_a.projects["MOON"]), "MOON"):
        r = await client.get("/v1/staff", params={"project": ref}, headers=b_admin)
        assert _codes(r) == []
    r = await client.get("/v1/staff", params={"department": "eng"}, headers=b_admin)
    assert _codes(r) == []
    # And the other way round.
    a_admin = dir_a.token("tenant_admin")
    assert "B001" not in _codes(await client.get("/v1/staff", headers=a_admin))
    assert "b-cs" not in _codes(await client.get("/v1/departments", headers=a_admin))
    r = await client.get(f"/v1/projects/{dir_b.projects['SUNRISE']}", headers=a_admin)
    _problem(r, 404, "project-not-found")


# --- departments ----------------------------------------------------------------------


async def test_departments_with_the_company_wide_ones(client, dir_a):
    clerk = dir_a.token("intake_clerk")
    r = await client.get("/v1/departments", headers=clerk)
    assert _codes(r) == ["cs", "eng", "mgmt", "moon-cs", "quality"]
    by_code = {d["code"]: d for d in r.json()["items"]}
    assert by_code["mgmt"]["project"] is None and by_code["mgmt"]["kind"] == "management"
    assert by_code["moon-cs"]["project"] == "MOON"
    assert by_code["cs"]["name"] == "客服中心"
    for ref in ("MOON", str(dir_a.projects["MOON"])):
        moon = await client.get("/v1/departments", params={"project": ref}, headers=clerk)
        assert _codes(moon) == ["mgmt", "moon-cs", "quality"]
    zeta = await client.get("/v1/departments", params={"project": "ZETA"}, headers=clerk)
    assert _codes(zeta) == ["mgmt", "quality"]
    unknown = await client.get("/v1/departments", params={"project": "NOWHERE"}, headers=clerk)
    assert _codes(unknown) == []
    page = await client.get("/v1/departments", params={"limit": 3}, headers=clerk)
    assert _codes(page) == ["cs", "eng", "mgmt"]
    rest = await client.get(
        "/v1/departments", params={"cursor": page.json()["next_cursor"]}, headers=clerk
    )
    assert _codes(rest) == ["moon-cs", "quality"]


# --- staff ----------------------------------------------------------------------------


async def test_staff_list_and_filters(client, dir_a):
    admin = dir_a.token("tenant_admin")
    r = await client.get("/v1/staff", headers=admin)
    assert _codes(r) == ["S000", "S001", "S002", "S003", "S101", "S102", "S900", "S950"]
    by_code = {m["code"]: m for m in r.json()["items"]}
    assert set(by_code["S102"]) == {
        "id",
        "code",
        "name",
        "roles",
        "department",
        "projects",
        "active",
    }
    assert by_code["S102"]["roles"] == ["cs_supervisor", "handler"]
    assert by_code["S102"]["projects"] == ["MOON", "SUNRISE"]
    assert by_code["S102"]["department"] == "moon-cs"
    assert by_code["S000"]["projects"] is None  # every project
    assert by_code["S950"]["active"] is False and by_code["S001"]["active"] is True

    async def codes(**params: object) -> list[str]:
        return _codes(await client.get("/v1/staff", params=params, headers=admin))

    assert await codes(role="handler") == ["S002", "S102", "S950"]
    assert await codes(role="handler", active="true") == ["S002", "S102"]
    assert await codes(active="false") == ["S950"]
    assert await codes(role="operator") == []
    assert await codes(department="eng") == ["S002", "S003", "S950"]
    assert await codes(department="nope") == []
    # A project's staff: its own and those of every project.
    assert await codes(project="MOON") == ["S000", "S101", "S102", "S900"]
    assert await codes(project=str(dir_a.projects["MOON"])) == ["S000", "S101", "S102", "S900"]
    assert await codes(project="ZETA") == ["S000", "S900"]
    assert await codes(project="NOWHERE") == []
    assert await codes(project="SUNRISE", department="eng", role="handler", active="true") == [
        "S002"
    ]
    first = await client.get("/v1/staff", params={"limit": 5}, headers=admin)
    assert _codes(first) == ["S000", "S001", "S002", "S003", "S101"]
    rest = await client.get(
        "/v1/staff", params={"limit": 5, "cursor": first.json()["next_cursor"]}, headers=admin
    )
    assert _codes(rest) == ["S102", "S900", "S950"] and rest.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "role", ["tenant_admin", "director", "cs_supervisor", "department_head", "quality"]
)
async def test_supervisor_roles_read_staff(client, dir_a, role):
    r = await client.get("/v1/staff", headers=dir_a.token(role))
    assert "S001" in _codes(r)


@pytest.mark.parametrize("role", ["handler", "intake_clerk", "affairs_assistant", "duty_leader"])
async def test_other_roles_may_not_read_staff(client, dir_a, role):
    r = await client.get("/v1/staff", headers=dir_a.token(role))
    body = _problem(r, 403, "forbidden")
    assert "cs_supervisor" in body["required_roles"] and "handler" not in body["required_roles"]
    # They still read the projects and departments.
    assert (await client.get("/v1/projects", headers=dir_a.token(role))).status_code == 200
    assert (await client.get("/v1/departments", headers=dir_a.token(role))).status_code == 200


async def test_an_api_key_may_not_read_staff(client, resources, dir_a):
    key = await make_key(resources, dir_a)
    _problem(await client.get("/v1/staff", headers=key), 403, "forbidden")


async def test_a_project_limited_supervisor_sees_its_projects_staff(client, dir_a):
    moon = dir_a.token("cs_supervisor", projects=["MOON"])
    r = await client.get("/v1/staff", headers=moon)
    # MOON's members and the members of every project; no SUNRISE-only member.
    assert _codes(r) == ["S000", "S101", "S102", "S900"]
    by_code = {m["code"]: m for m in r.json()["items"]}
    # S102 works for SUNRISE too: only the project the caller may see is named.
    assert by_code["S102"]["projects"] == ["MOON"]
    assert by_code["S000"]["projects"] is None
    assert _codes(await client.get("/v1/staff", params={"project": "SUNRISE"}, headers=moon)) == []
    assert _codes(await client.get("/v1/staff", params={"department": "eng"}, headers=moon)) == []


# --- who may call at all --------------------------------------------------------------


async def test_no_credential_and_operator(client, dir_a):
    operator = issue_token(dir_a.settings, tenant_id=None, subject="op", roles=["operator"])
    for path in ("/v1/projects", "/v1/projects/SUNRISE", "/v1/departments", "/v1/staff"):
        _problem(await client.get(path), 401, "unauthenticated")
        r = await client.get(path, headers={"Authorization": f"Bearer {operator}"})
        body = _problem(r, 403, "forbidden")
        assert "operator" in body["detail"].lower()


# --- bad input ------------------------------------------------------------------------


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


MALFORMED_UUID = "3fa85f64-5717-4562-b3fc-2c963f66afaz"

BAD_INPUT = [
    # (id, path, params, field, rule)
    ("unknown role", "/v1/staff", {"role": "janitor"}, "query.role", "enum"),
    ("active not a bool", "/v1/staff", {"active": "maybe"}, "query.active", "bool_parsing"),
    ("limit too big", "/v1/projects", {"limit": 1001}, "query.limit", "less_than_equal"),
    ("limit zero", "/v1/departments", {"limit": 0}, "query.limit", "greater_than_equal"),
    ("staff limit too big", "/v1/staff", {"limit": 5000}, "query.limit", "less_than_equal"),
    ("limit not a number", "/v1/staff", {"limit": "all"}, "query.limit", "int_parsing"),
    (
        "malformed uuid in path",
        f"/v1/projects/{MALFORMED_UUID}",
        {},
        "path.project",
        "uuid_parsing",
    ),
    ("too long code in path", "/v1/projects/" + "X" * 65, {}, "path.project", "string_too_long"),
    ("NUL in path", "/v1/projects/SUN%00RISE", {}, "path.project", "no_nul"),
    ("not a code in path", "/v1/projects/-SUNRISE", {}, "path.project", "string_pattern_mismatch"),
    ("space in path", "/v1/projects/SUN%20RISE", {}, "path.project", "string_pattern_mismatch"),
    ("newline in path", "/v1/projects/SUNRISE%0A", {}, "path.project", "string_pattern_mismatch"),
    (
        "uuid and a newline",
        f"/v1/projects/{uuid4()}%0A",
        {},
        "path.project",
        "string_pattern_mismatch",
    ),
    (
        "malformed uuid filter",
        "/v1/departments",
        {"project": MALFORMED_UUID},
        "query.project",
        "uuid_parsing",
    ),
    ("NUL in project filter", "/v1/departments", {"project": "SUN\x00"}, "query.project", "no_nul"),
    ("empty project filter", "/v1/staff", {"project": ""}, "query.project", "string_too_short"),
    (
        "too long project filter",
        "/v1/staff",
        {"project": "P" * 65},
        "query.project",
        "string_too_long",
    ),
    (
        "too long department",
        "/v1/staff",
        {"department": "d" * 65},
        "query.department",
        "string_too_long",
    ),
    ("NUL in department", "/v1/staff", {"department": "eng\x00"}, "query.department", "no_nul"),
    (
        "department not a code",
        "/v1/staff",
        {"department": "工程部"},
        "query.department",
        "string_pattern_mismatch",
    ),
    ("cursor garbage", "/v1/projects", {"cursor": "!!!"}, "query.cursor", "format"),
    (
        "cursor not a list",
        "/v1/departments",
        {"cursor": _cursor({"a": 1})},
        "query.cursor",
        "format",
    ),
    ("cursor with NUL", "/v1/staff", {"cursor": _cursor(["S\x00"])}, "query.cursor", "format"),
    ("cursor too long", "/v1/staff", {"cursor": "A" * 201}, "query.cursor", "string_too_long"),
]


@pytest.mark.parametrize(
    ("name", "path", "params", "field", "rule"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_a_422_naming_the_field(client, dir_a, name, path, params, field, rule):
    r = await client.get(path, params=params, headers=dir_a.token("tenant_admin"))
    body = _problem(r, 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [(field, rule)], body


async def test_lists_a_projects_units_in_pages(client, dir_a):
    """A project may have hundreds of thousands of units: they are a paged list of their
    own, by building and unit code, not part of the project's answer."""
    handler = dir_a.token("handler")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/projects/SUNRISE/units", headers=handler, params=params)
        assert r.status_code == 200, r.text
        seen += [(u["building"], u["code"]) for u in r.json()["items"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [("1", "101"), ("1", "102"), ("1", "201"), ("2", "101")]
    assert pages == 2
    one = await client.get("/v1/projects/SUNRISE/units", headers=handler, params={"building": "2"})
    assert one.json() == {"items": [{"building": "2", "code": "101"}], "next_cursor": None}
    by_id = await client.get(f"/v1/projects/{dir_a.projects['SUNRISE']}/units", headers=handler)
    assert [(u["building"], u["code"]) for u in by_id.json()["items"]] == seen
    # Another project's cursor shape (one code) is not a unit cursor; a bad building code
    # and an unknown project are answered precisely.
    other = await client.get("/v1/projects", headers=handler, params={"limit": 1})
    bad = await client.get(
        "/v1/projects/SUNRISE/units",
        headers=handler,
        params={"cursor": other.json()["next_cursor"]},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"
    bad = await client.get(
        "/v1/projects/SUNRISE/units", headers=handler, params={"building": "a b"}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.building"
    missing = await client.get("/v1/projects/NOPE/units", headers=handler)
    assert missing.status_code == 404 and missing.json()["code"] == "project-not-found"


async def test_a_second_tenant_sees_no_unit_of_the_first(client, dir_a, dir_b):
    other = dir_b.token("tenant_admin")
    # The second tenant's own SUNRISE answers with its units only.
    own = await client.get("/v1/projects/SUNRISE/units", headers=other)
    assert own.json()["items"] == [{"building": "9", "code": "901"}]
    # The first tenant's SUNRISE, by its id: as if it did not exist.
    r = await client.get(f"/v1/projects/{dir_a.projects['SUNRISE']}/units", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "project-not-found"
    # And a credential of MOON only does not see SUNRISE's units.
    moon = dir_a.token("cs_supervisor", projects=["MOON"])
    r = await client.get("/v1/projects/SUNRISE/units", headers=moon)
    assert r.status_code == 404
