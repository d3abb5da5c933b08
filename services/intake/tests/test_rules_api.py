"""`GET/PUT /v1/rules`: the tenant's classification rules, read, replaced, refused field by
field, recorded, and applied to the next complaint."""

from __future__ import annotations

from uuid import uuid4

import pytest

from intake.onboarding.apply import apply_document
from intake.onboarding.document import parse_document

from .conftest import COMPANY, Company, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_read_replace_and_apply(client, resources, db_rows):
    company = await onboard(resources, f"R{uuid4().hex[:6].upper()}", "规则物业")
    admin = company.token("tenant_admin", subject="admin-1")
    clerk = company.token("intake_clerk")

    got = await client.get("/v1/rules", headers=admin)
    assert got.status_code == 200, got.text
    assert got.json()["overrides"] == {}
    assert got.json()["effective"]["group_threshold_households"] == 3
    assert "漏水" in got.json()["effective"]["category_keywords"]["facility_repair"]

    before = await client.post(
        "/v1/complaints",
        json={"project": "SUNRISE", "channel": "phone", "content": "快递柜总是满的"},
        headers=clerk,
    )
    assert before.json()["category"] == "other"

    new_rules = {
        "category_keywords": {"facility_repair": ["快递柜"]},
        "duplicate_window_hours": 24,
        "received_at_max_age_hours": 48,
    }
    put = await client.put("/v1/rules", json=new_rules, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["overrides"] == new_rules
    eff = put.json()["effective"]
    assert eff["category_keywords"]["facility_repair"] == ["快递柜"]
    assert eff["category_keywords"]["noise"]  # other keys keep the defaults
    assert eff["duplicate_window_hours"] == 24 and eff["group_window_hours"] == 72
    assert put.json()["changes"][0]["actor"] == "admin-1"

    after = await client.post(
        "/v1/complaints",
        json={"project": "SUNRISE", "channel": "phone", "content": "快递柜总是满的"},
        headers=clerk,
    )
    assert after.json()["category"] == "facility_repair"

    supervisor = company.token("cs_supervisor", subject="sup-1")
    assert (await client.get("/v1/rules", headers=supervisor)).json()["overrides"] == new_rules
    reset = await client.put("/v1/rules", json={}, headers=supervisor)
    assert reset.status_code == 200
    assert reset.json()["effective"]["duplicate_window_hours"] == 72
    rows = await db_rows(
        "SELECT actor, previous, rules FROM intake.rules_changes WHERE tenant_id = $1 ORDER BY id",
        company.tenant_id,
    )
    assert [r["actor"] for r in rows] == ["admin-1", "sup-1"]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"group_threshold_households": 1}, "body.group_threshold_households"),
        ({"duplicate_window_hours": "soon"}, "body.duplicate_window_hours"),
        ({"received_at_max_age_hours": 0}, "body.received_at_max_age_hours"),
        ({"group_window_hours": 100000}, "body.group_window_hours"),
        ({"category_keywords": {"plumbing": ["水"]}}, "body.category_keywords.plumbing"),
        ({"category_keywords": {"noise": [""]}}, "body.category_keywords.noise"),
        ({"category_keywords": {"other": ["x"]}}, "body.category_keywords"),
        ({"colour": "red"}, "body.colour"),
        ({"repeat_major_round": 1}, "body.repeat_major_round"),
        # Numbers as JSON numbers: pydantic's lax mode read these as 72 and 1.0.
        ({"group_window_hours": "72"}, "body.group_window_hours"),
        ({"content_similarity_threshold": True}, "body.content_similarity_threshold"),
    ],
)
async def test_bad_rules_name_the_field(client, company_a, rules, field):
    r = await client.put("/v1/rules", json=rules, headers=company_a.token("tenant_admin"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_who_may(client, company_a):
    for roles in (("intake_clerk",), ("director",), ("handler",)):
        r = await client.get("/v1/rules", headers=company_a.token(*roles))
        assert r.status_code == 403, roles
    scoped = company_a.token("cs_supervisor", projects=["SUNRISE"])
    assert (await client.get("/v1/rules", headers=scoped)).status_code == 200
    r = await client.put("/v1/rules", json={}, headers=scoped)
    assert r.status_code == 403 and r.json()["code"] == "tenant-wide-scope-required"
    not_object = await client.put("/v1/rules", json=[1, 2], headers=company_a.token("tenant_admin"))
    assert not_object.status_code == 422
    assert (await client.get("/v1/rules")).status_code == 401


async def test_rules_changed_by_an_onboarding_document_are_recorded(client, resources, db_rows):
    """A company document's rules are a change of the rules like a PUT: listed with who and
    when, from what to what. They travel in no event (only intake classifies), so a
    document changing only its rules sends no tenant.upserted."""
    code = f"R{uuid4().hex[:6].upper()}"
    first = COMPANY.format(code=code, name="规则物业").replace(
        "settings: {}}", "settings: {}, rules: {duplicate_window_hours: 24}}"
    )
    report = await apply_document(resources.sessions, parse_document(first), actor="op-1")
    second = first.replace("duplicate_window_hours: 24", "duplicate_window_hours: 12")
    again = await apply_document(resources.sessions, parse_document(second), actor="op-2")
    assert again.changed == [f"tenant:{code}"]

    admin = Company(code, report.tenant_id, {}, resources.settings).token("tenant_admin")
    changes = (await client.get("/v1/rules", headers=admin)).json()
    assert [(c["actor"], c["rules"]) for c in changes["changes"]] == [
        ("op-2", {"duplicate_window_hours": 12}),
        ("op-1", {"duplicate_window_hours": 24}),
    ]
    rows = await db_rows(
        "SELECT previous FROM intake.rules_changes WHERE tenant_id = $1 ORDER BY id",
        report.tenant_id,
    )
    assert [r["previous"] for r in rows] == ["{}", '{"duplicate_window_hours": 24}']
    events = await db_rows(
        "SELECT event_type FROM intake.outbox WHERE tenant_id = $1 ORDER BY id",
        report.tenant_id,
    )
    assert [e["event_type"] for e in events].count("tenant.upserted") == 1  # the creation
