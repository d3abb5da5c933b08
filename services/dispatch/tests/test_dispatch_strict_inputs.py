"""Instants, booleans and integers the dispatch API takes are what docs/api.md says: ISO 8601 with a
UTC offset (a number is not a Unix time) and JSON true/false (not "yes", "on", 1); query
booleans are true/false. Anything else is a 422 problem naming the field and the rule."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from dispatch.testing import Tenant, engineering_order

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOT_INSTANTS = [1764300000, 1764300000000, "1764300000", 1764300000.5, "20261124"]
NOT_JSON_BOOLS = ["yes", "on", "1", 1, 0, "f", "true", None]


def _fields(r: Any) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


async def test_a_shift_instant_is_iso8601_text_never_a_unix_time(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    shift = {
        "staff_id": str(tenant.duty_leader),
        "project_id": str(tenant.project_id),
        "starts_at": "2026-11-24T00:00:00+08:00",
        "ends_at": "2026-11-25T00:00:00+08:00",
    }
    for number in NOT_INSTANTS:
        for name in ("starts_at", "ends_at"):
            r = await client.post("/v1/rosters/shifts", headers=admin, json={**shift, name: number})
            assert _fields(r) == [(f"body.{name}", "iso8601")], (name, number)
            assert "ISO 8601" in r.json()["errors"][0]["message"]
    r = await client.post("/v1/rosters/shifts", headers=admin, json=shift)
    assert r.status_code == 201, r.text
    assert r.json()["starts_at"] == "2026-11-24T00:00:00+08:00"
    # A time without an offset is `timezone_required`, on the field that lacks it.
    naive = {**shift, "starts_at": "2026-11-26T00:00:00", "ends_at": "2026-11-27T00:00:00"}
    r = await client.post("/v1/rosters/shifts", headers=admin, json=naive)
    assert _fields(r) == [
        ("body.starts_at", "timezone_required"),
        ("body.ends_at", "timezone_required"),
    ]
    r = await client.post(
        "/v1/rosters/shifts", headers=admin, json={**shift, "ends_at": "2026-11-25T00:00:00"}
    )
    assert _fields(r) == [("body.ends_at", "timezone_required")]


async def test_on_duty_at_is_iso8601_text_never_a_unix_time(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    head = tenant.token(tenant.head, "department_head")
    shift = {
        "staff_id": str(tenant.duty_leader),
        "project_id": str(tenant.project_id),
        "starts_at": "2026-11-24T00:00:00+08:00",
        "ends_at": "2026-11-25T00:00:00+08:00",
    }
    assert (await client.post("/v1/rosters/shifts", headers=admin, json=shift)).status_code == 201
    on_duty = {"project_id": str(tenant.project_id)}
    for number in ("1764000000", "1763913600000"):
        r = await client.get("/v1/rosters/on-duty", headers=head, params={**on_duty, "at": number})
        assert _fields(r) == [("query.at", "iso8601")], number
    r = await client.get(
        "/v1/rosters/on-duty", headers=head, params={**on_duty, "at": "2026-11-24T02:00:00Z"}
    )
    assert r.status_code == 200 and r.json()["on_duty"] == [str(tenant.duty_leader)], r.text
    r = await client.get(
        "/v1/rosters/on-duty", headers=head, params={**on_duty, "at": "2026-11-24T10:00:00"}
    )
    assert _fields(r) == [("query.at", "timezone_required")]


async def test_calendar_booleans_are_json_true_or_false(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    hours = f"/v1/calendars/{tenant.project_id}/hours"
    day = f"/v1/calendars/{tenant.project_id}/days/2027-03-03"
    for value in NOT_JSON_BOOLS:
        r = await client.put(
            hours,
            headers=admin,
            json={"periods": ["08:30-17:30"], "observe_public_holidays": value},
        )
        assert _fields(r) == [("body.observe_public_holidays", "bool_type")], value
        r = await client.put(day, headers=admin, json={"kind": "holiday", "tenant_wide": value})
        assert _fields(r) == [("body.tenant_wide", "bool_type")], value
    r = await client.put(
        hours, headers=admin, json={"periods": ["08:30-17:30"], "observe_public_holidays": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["hours"]["observe_public_holidays"] is False
    r = await client.put(day, headers=admin, json={"kind": "holiday", "tenant_wide": False})
    assert r.status_code == 200 and r.json()["scope"] == "project", r.text


async def test_work_order_booleans_are_true_or_false(res, tenant: Tenant, client) -> None:
    url, engineer = await engineering_order(res, tenant)
    me = tenant.handler(engineer)
    assert (await client.post(f"{url}/accept", headers=me)).status_code == 200
    for value in NOT_JSON_BOOLS:
        r = await client.post(
            f"{url}/progress", headers=me, json={"note": "上门查看", "site_visit": value}
        )
        assert _fields(r) == [("body.site_visit", "bool_type")], value
    r = await client.post(
        f"{url}/progress", headers=me, json={"note": "上门查看", "site_visit": True}
    )
    assert r.status_code == 200 and r.json()["state"] == "in_progress", r.text


async def test_a_query_boolean_is_true_or_false(res, tenant: Tenant, client) -> None:
    _, engineer = await engineering_order(res, tenant)
    me = tenant.handler(engineer)
    # A query's boolean is the text true or false (any letter case), nothing else.
    for value in ("yes", "on", "1", "0", "f", "", "truthy"):
        r = await client.get("/v1/work-orders/mine", headers=me, params={"include_closed": value})
        assert _fields(r) == [("query.include_closed", "bool_parsing")], value
    for value in ("true", "false", "True"):
        r = await client.get("/v1/work-orders/mine", headers=me, params={"include_closed": value})
        assert r.status_code == 200 and r.json()["count"] == 1, r.text


async def test_integers_are_json_integers_never_text_or_booleans(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    rule = {"department": "eng", "category": "noise"}
    for value in ("5", True):
        r = await client.post("/v1/routing-rules", headers=admin, json={**rule, "priority": value})
        assert _fields(r) == [("body.priority", "int_type")], value
    r = await client.post("/v1/routing-rules", headers=admin, json={**rule, "priority": 5})
    assert r.status_code == 201 and r.json()["priority"] == 5, r.text
    hours = f"/v1/calendars/{tenant.project_id}/hours"
    for value in (True, "1"):
        r = await client.put(
            hours, headers=admin, json={"periods": ["08:30-17:30"], "weekdays": [0, value]}
        )
        assert _fields(r) == [("body.weekdays.1", "int_type")], value
    r = await client.put(
        hours, headers=admin, json={"periods": ["08:30-17:30"], "weekdays": [0, 1]}
    )
    assert r.status_code == 200, r.text
