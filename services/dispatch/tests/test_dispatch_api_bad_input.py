"""Bad input to the dispatch API: each a precise 4xx problem naming the field and the rule,
never a 500, and never a rule that could not work stored."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from pydantic import ValidationError

from dispatch.flows.dispatching import dispatch_classified
from dispatch.store import work_orders as orders
from dispatch.testing import Tenant, apply_directory, seed_tenant
from propdesk.auth.tokens import issue_token
from propdesk.db.session import tenant_transaction
from propdesk.events.contracts.tenant import ProjectUpserted, StaffUpserted
from propdesk.settings import asyncpg_dsn
from propdesk.testing.admin_reads import admin_fetch

pytestmark = pytest.mark.asyncio(loop_scope="session")

BOUNDS = "roster_shifts_within_bounds"  # migration 0010's check


def _fields(r) -> list[tuple[str, str]]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"department": "eng", "category": "plumbing"}, "body.category", "literal_error"),
        ({"department": "eng", "grade": "urgent"}, "body.grade", "literal_error"),
        ({"department": "eng", "handler_role": "boss"}, "body.handler_role", "enum"),
        ({"department": "finance"}, "body.department", "reference"),
        ({"department": "eng", "inform": ["cs", "quality"]}, "body.inform[1]", "reference"),
        (
            {"department": "eng", "handler_staff_id": str(uuid4())},
            "body.handler_staff_id",
            "reference",
        ),
        ({"department": "eng", "building": ""}, "body.building", "string_too_short"),
        # A project the company does not have: it was stored, naming the company's
        # departments, as a rule for no project.
        ({"department": "eng", "project_id": str(uuid4())}, "body.project_id", "exists"),
        ({"department": "eng", "note": "漏水\u0000"}, "body.note", "no_nul"),
        ({"department": "eng", "inform": ["cs\u0000"]}, "body.inform", "no_nul"),
        # A role no staff member has, a department informed twice, an empty one.
        ({"department": "eng", "handler_role": "operator"}, "body.handler_role", "enum"),
        ({"department": "eng", "handler_role": "integration"}, "body.handler_role", "enum"),
        ({"department": "eng", "inform": ["cs", "cs"]}, "body.inform", "unique"),
        ({"department": "eng", "inform": [""]}, "body.inform.0", "string_too_short"),
    ],
)
async def test_a_rule_that_could_not_work_is_refused(
    tenant: Tenant, client, body: dict, field: str, rule: str
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.post("/v1/routing-rules", headers=admin, json=body)
    assert r.status_code == 422, r.text
    assert (field, rule) in _fields(r)
    listed = (await client.get("/v1/routing-rules", headers=admin)).json()
    assert listed["count"] == 0


async def test_rules_name_departments_by_code_or_kind_and_existing_staff(
    tenant: Tenant, client
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    body = {
        "department": "engineering",  # a kind
        "category": "facility_repair",
        "inform": ["cs"],  # a code
        "handler_staff_id": str(tenant.handler_a),
        "handler_role": "handler",
    }
    r = await client.post("/v1/routing-rules", headers=admin, json=body)
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    r = await client.put(
        f"/v1/routing-rules/{rule_id}", headers=admin, json={**body, "department": "legal"}
    )
    assert r.status_code == 422 and ("body.department", "reference") in _fields(r)


@pytest.mark.parametrize("rule_id", ["99999999999999999999", "-99999999999999999999", "0"])
async def test_a_rule_id_out_of_range_is_a_422(tenant: Tenant, client, rule_id: str) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.delete(f"/v1/routing-rules/{rule_id}", headers=admin)
    assert r.status_code == 422, r.text
    assert _fields(r)[0][0] == "path.rule_id"


async def test_preview_takes_only_the_vocabulary(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.post(
        "/v1/routing-rules/preview",
        headers=admin,
        json={"project_id": str(tenant.project_id), "category": "fees", "grade": "urgent"},
    )
    assert r.status_code == 422 and ("body.grade", "literal_error") in _fields(r)


async def test_on_duty_at_a_time_without_offset_is_a_422(tenant: Tenant, client) -> None:
    head = tenant.token(tenant.head, "department_head")
    shift = {
        "staff_id": str(tenant.duty_leader),
        "starts_at": "2026-11-24T00:00:00+08:00",
        "ends_at": "2026-11-25T00:00:00+08:00",
    }
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.post(
        "/v1/rosters/shifts", headers=admin, json={**shift, "project_id": str(tenant.project_id)}
    )
    assert r.status_code in (200, 201), r.text  # a shift exists: the comparison runs
    r = await client.get(
        "/v1/rosters/on-duty",
        headers=head,
        params={"project_id": str(tenant.project_id), "at": "2026-11-24T10:00:00"},
    )
    assert r.status_code == 422, r.text
    assert ("query.at", "timezone_required") in _fields(r)
    r = await client.get(
        "/v1/rosters/on-duty",
        headers=head,
        params={"project_id": str(tenant.project_id), "at": "2026-11-24T10:00:00+08:00"},
    )
    assert r.status_code == 200 and r.json()["on_duty"] == [str(tenant.duty_leader)]


async def test_calendar_year_out_of_range_is_a_422(tenant: Tenant, client) -> None:
    head = tenant.token(tenant.head, "department_head")
    r = await client.get(
        f"/v1/calendars/{tenant.project_id}", headers=head, params={"year": "99999999"}
    )
    assert r.status_code == 422 and ("query.year", "less_than_equal") in _fields(r)


async def test_a_project_event_with_an_unknown_time_zone_is_malformed() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        ProjectUpserted(project_id=uuid4(), code="P", name="p", time_zone="Mars/Olympus")


SHIFT_AT = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Tuesday


def _shift(tenant: Tenant, **fields: object) -> dict[str, object]:
    return {
        "staff_id": str(tenant.duty_leader),
        "project_id": str(tenant.project_id),
        "starts_at": "2026-11-24T08:00:00+08:00",
        "ends_at": "2026-11-24T20:00:00+08:00",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        # Python cannot even take these to UTC (date value out of range).
        ({"starts_at": "0001-01-01T00:00:00+14:00"}, "body.starts_at", "range"),
        ({"ends_at": "9999-12-31T23:59:59-12:00"}, "body.ends_at", "range"),
        # PostgreSQL would store these as -infinity / (nearly) infinity.
        ({"starts_at": "0001-01-01T00:00:00+00:00"}, "body.starts_at", "range"),
        ({"ends_at": "9999-12-31T23:59:59+00:00"}, "body.ends_at", "range"),
        ({"starts_at": "1999-12-31T23:59:59+00:00"}, "body.starts_at", "range"),
        ({"ends_at": "2101-01-01T00:00:00+08:00"}, "body.ends_at", "range"),
        ({"ends_at": "2026-12-01T08:00:01+08:00"}, "body.ends_at", "max_duration"),
        ({"note": "n" * 200_000}, "body.note", "string_too_long"),
    ],
)
async def test_a_shift_out_of_range_is_a_422_and_not_stored(
    tenant: Tenant, client, fields: dict, field: str, rule: str
) -> None:
    supervisor = tenant.token(uuid4(), "cs_supervisor")
    r = await client.post("/v1/rosters/shifts", headers=supervisor, json=_shift(tenant, **fields))
    assert r.status_code == 422, r.text
    assert (field, rule) in _fields(r)
    stored = await admin_fetch(
        tenant.settings,
        "SELECT count(*) AS n FROM dispatch.roster_shifts WHERE project_id = $1",
        tenant.project_id,
    )
    assert stored[0]["n"] == 0
    # A week is the longest shift there is.
    week = _shift(tenant, ends_at="2026-12-01T08:00:00+08:00", note="春节值班")
    r = await client.post("/v1/rosters/shifts", headers=supervisor, json=week)
    assert r.status_code == 201, r.text


async def test_shifts_stored_out_of_range_break_neither_on_duty_nor_dispatch(
    res, tenant: Tenant, client
) -> None:
    """Rows written before the API refused them (PostgreSQL's ±infinity, which asyncpg
    reads as naive datetime.min/max, and a year before Christ, which it cannot read):
    the on-duty view and the assignment read them as what they say about the hour
    asked, never as a 500 or a dead-lettered complaint."""
    conn = await asyncpg.connect(asyncpg_dsn(res.settings.database_url))
    try:
        async with conn.transaction():
            # As they were stored before migration 0010 (whose check is NOT VALID: it
            # leaves old rows alone and refuses new ones).
            await conn.execute(f"ALTER TABLE dispatch.roster_shifts DROP CONSTRAINT {BOUNDS}")
            await conn.executemany(
                "INSERT INTO dispatch.roster_shifts (tenant_id, project_id, staff_id,"
                " starts_at, ends_at) VALUES ($1, $2, $3, $4::text::timestamptz,"
                " $5::text::timestamptz)",
                [
                    (tenant.tenant_id, tenant.project_id, who, starts, ends)
                    for who, starts, ends in (
                        (tenant.handler_a, "2026-11-24 09:00+08", "infinity"),
                        (tenant.handler_b, "-infinity", "2026-11-24 09:00+08"),
                        (tenant.duty_leader, "-infinity", "infinity"),
                        (tenant.head, "0001-01-01 00:00:00+14", "2026-11-24 11:00+08"),
                    )
                ],
            )
            await conn.execute(
                f"ALTER TABLE dispatch.roster_shifts ADD CONSTRAINT {BOUNDS} CHECK"
                " (starts_at >= '1999-12-31 00:00:00+00' AND ends_at <= '2101-01-02 00:00:00+00')"
                " NOT VALID"
            )
        # New rows out of range are refused by the database too.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO dispatch.roster_shifts (tenant_id, project_id, staff_id,"
                " starts_at, ends_at) VALUES ($1, $2, $3, '-infinity', now())",
                tenant.tenant_id,
                tenant.project_id,
                tenant.handler_a,
            )
    finally:
        await conn.close()

    head = tenant.token(tenant.head, "department_head")
    for at, on_duty in (
        (SHIFT_AT, {tenant.handler_a, tenant.duty_leader, tenant.head}),
        (SHIFT_AT.replace(hour=8), {tenant.handler_b, tenant.duty_leader, tenant.head}),
        (SHIFT_AT.replace(year=2100), {tenant.handler_a, tenant.duty_leader}),
    ):
        r = await client.get(
            "/v1/rosters/on-duty",
            headers=head,
            params={"project_id": str(tenant.project_id), "at": at.isoformat()},
        )
        assert r.status_code == 200, r.text
        assert r.json()["on_duty"] == sorted(str(s) for s in on_duty)
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        wo = await dispatch_classified(session, tenant.tenant_id, tenant.classified(), now=SHIFT_AT)
        assert wo is not None
        order = await orders.get(session, wo)
    assert order is not None and order.handler_id == tenant.handler_a, order


@pytest.mark.parametrize("who", ["random", "other_tenant", "out_of_scope"])
async def test_on_duty_of_a_project_not_visible_is_a_404(res, tenant: Tenant, client, who) -> None:
    headers = tenant.token(tenant.head, "department_head")
    project_id = uuid4()
    if who == "other_tenant":
        project_id = (await seed_tenant(res)).project_id
    elif who == "out_of_scope":
        project_id = tenant.project_id
        headers = _limited(tenant, "department_head", [uuid4()])
    for url, params in (
        ("/v1/rosters/on-duty", {"project_id": str(project_id)}),
        (f"/v1/calendars/{project_id}", {}),
    ):
        r = await client.get(url, headers=headers, params=params)
        assert r.status_code == 404 and r.json()["code"] == "project-not-found", (url, r.text)


def _limited(tenant: Tenant, role: str, projects: list[UUID]) -> dict[str, str]:
    token = issue_token(
        tenant.settings,
        tenant_id=tenant.tenant_id,
        subject=str(uuid4()),
        roles=[role],
        project_ids=projects,
    )
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("day", "rule"),
    [
        ("0001-01-01", "range"),
        ("9999-12-31", "range"),
        ("1999-12-31", "range"),
        ("2101-01-01", "range"),
        ("2026-12-01T00:00:00", "date_parsing"),
        ("2026-12-01 00:00", "date_parsing"),
        ("20261201", "date_parsing"),
        ("2026-02-30", "date_parsing"),
    ],
)
async def test_a_local_day_out_of_range_or_not_a_date_is_a_422(
    tenant: Tenant, client, day: str, rule: str
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.put(
        f"/v1/calendars/{tenant.project_id}/days/{day}",
        headers=admin,
        json={"kind": "holiday", "name": "probe"},
    )
    assert r.status_code == 422, r.text
    assert _fields(r) == [("path.day", rule)]
    stored = await admin_fetch(
        tenant.settings,
        "SELECT count(*) AS n FROM dispatch.calendar_days WHERE tenant_id = $1",
        tenant.tenant_id,
    )
    assert stored[0]["n"] == 0
    for edge in ("2000-01-01", "2100-12-31"):
        r = await client.put(
            f"/v1/calendars/{tenant.project_id}/days/{edge}",
            headers=admin,
            json={"kind": "holiday", "name": "边界"},
        )
        assert r.status_code == 200 and r.json()["day"] == edge, r.text


async def test_a_holiday_name_has_a_length_limit(res, tenant: Tenant, client) -> None:
    op = {
        "authorization": "Bearer "
        + issue_token(res.settings, tenant_id=None, subject="op", roles=["operator"])
    }
    for what in ("holidays", "workdays"):
        body = {"holidays": {}, what: {"2099-01-01": "h" * 100_000}}
        r = await client.put("/v1/calendars/years/2099", headers=op, json=body)
        assert r.status_code == 422, r.text
        assert (f"body.{what}.2099-01-01", "string_too_long") in _fields(r)
    r = await client.put(
        "/v1/calendars/years/2099",
        headers=op,
        json={"holidays": {"2099-01-01T00:00:00": "元旦"}},
    )
    assert r.status_code == 422 and _fields(r)[0][1] == "date_parsing", r.text
    stored = await admin_fetch(
        res.settings, "SELECT count(*) AS n FROM dispatch.platform_calendar_years WHERE year = 2099"
    )
    assert stored[0]["n"] == 0
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.put(
        f"/v1/calendars/{tenant.project_id}/days/2027-03-03",
        headers=admin,
        json={"kind": "holiday", "name": "节" * 201},
    )
    assert r.status_code == 422 and ("body.name", "string_too_long") in _fields(r)


@pytest.mark.parametrize(
    ("weekdays", "rule"),
    [([9, -1], "range"), ([0, 7], "range"), ([0, 0, 0], "unique"), ([], "too_short")],
)
async def test_working_weekdays_are_0_to_6_once_each_and_some(
    tenant: Tenant, client, weekdays: list[int], rule: str
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    url = f"/v1/calendars/{tenant.project_id}/hours"
    body = {"periods": ["08:00-12:00"], "weekdays": weekdays}
    r = await client.put(url, headers=admin, json=body)
    assert r.status_code == 422, r.text
    assert _fields(r) == [("body.weekdays", rule)]
    r = await client.put(url, headers=admin, json={"periods": ["08:00-12:00"], "weekdays": [6, 0]})
    assert r.status_code == 200 and r.json()["hours"]["weekdays"] == [0, 6], r.text


@pytest.mark.parametrize("who", ["random", "other_tenant", "out_of_scope"])
async def test_preview_for_a_project_not_visible_is_a_422(
    res, tenant: Tenant, client, who: str
) -> None:
    headers = tenant.token(uuid4(), "tenant_admin")
    project_id, rule = uuid4(), "exists"
    if who == "other_tenant":
        project_id = (await seed_tenant(res)).project_id
    elif who == "out_of_scope":
        project_id, rule = tenant.project_id, "in_scope"
        headers = _limited(tenant, "director", [uuid4()])
    r = await client.post(
        "/v1/routing-rules/preview",
        headers=headers,
        json={"project_id": str(project_id), "category": "fees"},
    )
    assert r.status_code == 422, r.text
    assert _fields(r) == [("body.project_id", rule)]
    # The project's own credential previews it.
    r = await client.post(
        "/v1/routing-rules/preview",
        headers=_limited(tenant, "director", [tenant.project_id]),
        json={"project_id": str(tenant.project_id), "category": "fees"},
    )
    assert r.status_code == 200 and r.json()["department"] == "finance", r.text


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"building": "\u0000"}, "body.building", "no_nul"),
        ({"place": "车库\u0000"}, "body.place", "no_nul"),
        ({"extra": 1}, "body.extra", "extra_forbidden"),
    ],
)
async def test_preview_text_is_text_postgresql_can_store(
    tenant: Tenant, client, fields: dict, field: str, rule: str
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.post(
        "/v1/routing-rules/preview",
        headers=admin,
        json={"project_id": str(tenant.project_id), "category": "fees", **fields},
    )
    assert r.status_code == 422 and (field, rule) in _fields(r), r.text


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59+00:00"])
async def test_on_duty_at_a_time_out_of_range_is_a_422(tenant: Tenant, client, at: str) -> None:
    head = tenant.token(tenant.head, "department_head")
    r = await client.get(
        "/v1/rosters/on-duty",
        headers=head,
        params={"project_id": str(tenant.project_id), "at": at},
    )
    assert r.status_code == 422 and _fields(r) == [("query.at", "range")], r.text


async def test_someone_who_left_is_not_on_duty(res, tenant: Tenant, client) -> None:
    """A shift outlives its person's leaving (deactivation removes no shift); the on-duty
    view, like the assignment, then leaves them out."""
    head = tenant.token(tenant.head, "department_head")
    shift = {
        "project_id": str(tenant.project_id),
        "staff_id": str(tenant.handler_b),
        "starts_at": SHIFT_AT.replace(hour=8).isoformat(),
        "ends_at": SHIFT_AT.replace(hour=20).isoformat(),
    }
    r = await client.post("/v1/rosters/shifts", headers=head, json=shift)
    assert r.status_code == 201, r.text
    params = {"project_id": str(tenant.project_id), "at": SHIFT_AT.isoformat()}
    r = await client.get("/v1/rosters/on-duty", headers=head, params=params)
    assert r.json()["on_duty"] == [str(tenant.handler_b)], r.text

    await apply_directory(
        res,
        tenant,
        [
            StaffUpserted(
                staff_id=tenant.handler_b,
                project_ids=[tenant.project_id],
                department_id=tenant.engineering,
                name="李工",
                roles=["handler"],
                skills=["facility_repair"],
                active=False,
            )
        ],
    )
    r = await client.get("/v1/rosters/on-duty", headers=head, params=params)
    assert r.status_code == 200, r.text
    assert r.json()["on_duty"] == []
