"""Bad input to the dispatch API: each a precise 4xx problem naming the field and the rule,
never a 500, and never a rule that could not work stored."""

from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import ValidationError

from dispatch.testing import Tenant
from propdesk.events.contracts.tenant import ProjectUpserted

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
        ({"department": "eng", "note": "漏水\u0000"}, "body.note", "no_nul"),
        ({"department": "eng", "inform": ["cs\u0000"]}, "body.inform", "no_nul"),
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
    assert ("query.at", "timezone_aware") in _fields(r)
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
