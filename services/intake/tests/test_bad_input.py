"""Bad input, table-driven: each case a precise 4xx problem naming the field, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

GOOD = {"project": "SUNRISE", "channel": "phone", "content": "电梯坏了"}


def with_(**over: object) -> dict[str, object]:
    return {**GOOD, **over}


def without(name: str) -> dict[str, object]:
    return {k: v for k, v in GOOD.items() if k != name}


CASES = [
    # (id, raw body or json, status, code, field)
    ("malformed json", b'{"project": "SUNRISE",', 400, "malformed-json", "body"),
    ("not an object", [1, 2], 422, "validation-failed", "body"),
    ("content wrong type", with_(content=123), 422, "validation-failed", "body.content"),
    ("unknown channel", with_(channel="pigeon"), 422, "validation-failed", "body.channel"),
    ("unknown category", with_(category="weather"), 422, "validation-failed", "body.category"),
    ("missing project", without("project"), 422, "validation-failed", "body.project"),
    ("missing content", without("content"), 422, "validation-failed", "body.content"),
    ("unknown project", with_(project="NOWHERE"), 422, "validation-failed", "body.project"),
    ("oversized content", with_(content="投" * 4001), 422, "validation-failed", "body.content"),
    (
        "too many attachments",
        with_(attachments=[{"url": f"https://x/{i}"} for i in range(21)]),
        422,
        "validation-failed",
        "body.attachments",
    ),
    (
        "attachment without url or ref",
        with_(attachments=[{"kind": "photo"}]),
        422,
        "validation-failed",
        "body.attachments.0",
    ),
    ("unknown field", with_(colour="red"), 422, "validation-failed", "body.colour"),
    (
        "received_at in the future",
        with_(received_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
        422,
        "validation-failed",
        "body.received_at",
    ),
    (
        "received_at too old",
        with_(received_at=(datetime.now(UTC) - timedelta(days=8)).isoformat()),
        422,
        "validation-failed",
        "body.received_at",
    ),
    (
        "received_at without offset",
        with_(received_at="2026-11-26T10:00:00"),
        422,
        "validation-failed",
        "body.received_at",
    ),
    ("bad date", with_(received_at="yesterday"), 422, "validation-failed", "body.received_at"),
    (
        "unit without room",
        with_(unit={"building": "1"}),
        422,
        "validation-failed",
        "body.unit",
    ),
    (
        "unknown unit id",
        with_(unit={"id": str(uuid4())}),
        422,
        "validation-failed",
        "body.unit.id",
    ),
    (
        "bad phone",
        with_(complainant={"phone": "call me maybe"}),
        422,
        "validation-failed",
        "body.complainant.phone",
    ),
]


@pytest.mark.parametrize(
    ("name", "payload", "status", "code", "field"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_complaint_input(client, company_a, name, payload, status, code, field):
    headers = {**company_a.token("intake_clerk"), "Content-Type": "application/json"}
    if isinstance(payload, bytes):
        r = await client.post("/v1/complaints", content=payload, headers=headers)
    else:
        r = await client.post("/v1/complaints", json=payload, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == code
    fields = [e["field"] for e in problem.get("errors", [])]
    assert any(
        f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields
    ), fields


async def test_wrong_tenant_and_no_credentials(client, company_b):
    r = await client.post("/v1/complaints", json=GOOD)
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    other = await client.get(f"/v1/complaints/{uuid4()}", headers=company_b.token("intake_clerk"))
    assert other.status_code == 404


async def test_bad_idempotency_key_and_cursor(client, company_a):
    clerk = company_a.token("intake_clerk")
    r = await client.post(
        "/v1/complaints", json=GOOD, headers={**clerk, "Idempotency-Key": "x" * 300}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header.Idempotency-Key"
    c = await client.get("/v1/complaints", params={"cursor": "!!!"}, headers=clerk)
    assert c.status_code == 422 and c.json()["errors"][0]["field"] == "query.cursor"
    g = await client.get("/v1/complaints", params={"grade": "huge"}, headers=clerk)
    assert g.status_code == 422 and g.json()["errors"][0]["field"] == "query.grade"
    bad_id = await client.get("/v1/complaints/not-a-uuid", headers=clerk)
    assert bad_id.status_code == 422


async def test_tenant_rules_change_the_received_at_limit(client, resources, company_a):
    from intake.onboarding.apply import apply_document
    from intake.onboarding.document import validate_document

    # A company that accepts call-center tickets up to 14 days old.
    doc = validate_document(
        {
            "tenant": {
                "code": "LONGRULES",
                "name": "长规则物业",
                "rules": {"received_at_max_age_hours": 336},
            },
            "projects": [{"code": "P1", "name": "一期"}],
        }
    )
    report = await apply_document(resources.sessions, doc, actor="test")
    from propdesk.auth.tokens import issue_token

    token = issue_token(
        resources.settings, tenant_id=report.tenant_id, subject="t", roles=["intake_clerk"]
    )
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    r = await client.post(
        "/v1/complaints",
        json={"project": "P1", "channel": "call_center", "content": "电梯坏了", "received_at": old},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!!"}, "query.cursor"),
        ({"cursor": "W10"}, "query.cursor"),  # []
        ({"cursor": "WzEsMl0"}, "query.cursor"),  # [1,2]
        ({"cursor": "WyIyMDI2LTAxLTAxIiwiMSJd"}, "query.cursor"),  # ["2026-01-01","1"]
        ({"cursor": "eyJhIjoxfQ"}, "query.cursor"),  # {"a":1}
        ({"cursor": "x" * 501}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"received_from": "2026-01-01T00:00:00"}, "query.received_from"),
        ({"received_to": "yesterday"}, "query.received_to"),
        ({"received_from": "9999-12-31T23:59:59-14:00"}, "query.received_from"),
        ({"grade": "huge"}, "query.grade"),
        ({"q": ""}, "query.q"),
        ({"q": "x" * 201}, "query.q"),
        ({"status": "lost"}, "query.status"),
    ],
)
async def test_odd_list_queries_are_4xx_naming_the_parameter(client, company_a, params, field):
    r = await client.get("/v1/complaints", params=params, headers=company_a.token("intake_clerk"))
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_naive_cursor_from_outside_is_refused_and_a_real_one_works(client, company_a):
    import base64

    import orjson

    clerk = company_a.token("intake_clerk")
    raw = orjson.dumps(["2026-01-01T00:00:00", str(uuid4())])
    naive = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    r = await client.get("/v1/complaints", params={"cursor": naive}, headers=clerk)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"
    for _ in range(2):
        made = await client.post("/v1/complaints", json=GOOD, headers=clerk)
        assert made.status_code == 201, made.text
    page = await client.get("/v1/complaints", params={"limit": 1}, headers=clerk)
    nxt = page.json()["next_cursor"]
    assert (
        nxt
        and (
            await client.get("/v1/complaints", params={"cursor": nxt, "q": "%_\\"}, headers=clerk)
        ).status_code
        == 200
    )


@pytest.mark.parametrize("path", ["not-a-uuid", "00000000-0000-0000-0000-00000000000Z"])
async def test_odd_complaint_ids_on_read_and_timeline(client, company_a, path):
    clerk = company_a.token("intake_clerk")
    for url in (f"/v1/complaints/{path}", f"/v1/complaints/{path}/timeline"):
        r = await client.get(url, headers=clerk)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "path.complaint_id"
    missing = await client.get(f"/v1/complaints/{uuid4()}/timeline", headers=clerk)
    assert missing.status_code == 404
