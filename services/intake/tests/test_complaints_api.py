"""Recording, reading, listing and the timeline, through the HTTP API on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from .conftest import onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


def complaint(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "project": "SUNRISE",
        "channel": "phone",
        "content": f"楼道灯不亮了 {uuid4().hex[:6]}",
        "complainant": {"name": "李先生", "phone": "13800138000"},
        "unit": {"building": "1", "room": "101"},
        "place": "1号楼楼道",
        "demand": "尽快修好",
        "receiver": "王敏",
    }
    body.update(over)
    return body


async def test_record_get_and_timeline(client, company_a, db_rows):
    clerk = company_a.token("intake_clerk")
    received = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    r = await client.post(
        "/v1/complaints",
        json=complaint(
            received_at=received,
            external_reference="CC-1",
            attachments=[{"url": "https://x/1.jpg", "kind": "photo"}],
        ),
        headers=clerk,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["reference"].startswith("SUNRISE-")
    assert body["category"] == "facility_repair"
    assert body["grade"] == "simple"
    assert body["unit"]["room"] == "101" and body["unit"]["id"]
    assert body["complainant"]["household_id"] == body["unit"]["id"]
    assert datetime.fromisoformat(body["received_at"]) == datetime.fromisoformat(received)
    assert body["recorded_at"] > body["received_at"]
    assert r.headers["location"] == f"/v1/complaints/{body['id']}"

    got = await client.get(f"/v1/complaints/{body['id']}", headers=clerk)
    assert got.status_code == 200
    assert got.json()["reference"] == body["reference"]

    tl = await client.get(f"/v1/complaints/{body['id']}/timeline", headers=clerk)
    assert tl.status_code == 200
    types = [e["type"] for e in tl.json()["events"]]
    assert types == ["complaint.received", "complaint.classified"]
    assert tl.json()["events"][0]["actor"] == "ACME:intake_clerk"

    outbox = await db_rows(
        "SELECT event_type, envelope FROM intake.outbox WHERE envelope->>'aggregate_id' = $1"
        " ORDER BY id",
        body["id"],
    )
    assert [o["event_type"] for o in outbox] == ["complaint.received", "complaint.classified"]


async def test_list_filters_search_and_cursor(client, company_a):
    clerk = company_a.token("intake_clerk")
    marker = uuid4().hex[:8]
    ids = []
    for i in range(5):
        # Five households (another unit and phone each): the same one again would join
        # its open case instead of making a new complaint.
        r = await client.post(
            "/v1/complaints",
            json=complaint(
                content=f"垃圾没有清理 smell {marker} #{i}",
                channel="wechat",
                unit={"building": "5", "room": f"50{i + 1}"},
                complainant={"name": "李先生", "phone": f"137{uuid4().int % 10**8:08d}"},
                received_at=(datetime.now(UTC) - timedelta(minutes=10 - i)).isoformat(),
            ),
            headers=clerk,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    seen = []
    cursor = None
    while True:
        params = {"q": marker, "limit": 2, "channel": "wechat", "project": "SUNRISE"}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/complaints", params=params, headers=clerk)
        assert page.status_code == 200, page.text
        seen += [c["id"] for c in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, no repeats, none missing

    english = await client.get("/v1/complaints", params={"q": "SMELL " + marker}, headers=clerk)
    assert len(english.json()["items"]) == 5
    none = await client.get(
        "/v1/complaints", params={"q": marker, "category": "noise"}, headers=clerk
    )
    assert none.json()["items"] == []
    other_project = await client.get(
        "/v1/complaints", params={"q": marker, "project": "MOON"}, headers=clerk
    )
    assert other_project.json()["items"] == []


async def test_classification_override_is_audited(client, company_a, db_rows):
    clerk = company_a.token("intake_clerk")
    supervisor = company_a.token("cs_supervisor", subject="sup-1")
    r = await client.post("/v1/complaints", json=complaint(), headers=clerk)
    cid = r.json()["id"]
    denied = await client.post(
        f"/v1/complaints/{cid}/classification",
        json={"grade": "complex", "reason": "x"},
        headers=clerk,
    )
    assert denied.status_code == 403
    ok = await client.post(
        f"/v1/complaints/{cid}/classification",
        json={"category": "security", "grade": "complex", "reason": "门禁故障属于安全管理"},
        headers=supervisor,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["category"] == "security" and ok.json()["grade"] == "complex"
    assert ok.json()["category_source"] == "staff"
    tl = (await client.get(f"/v1/complaints/{cid}/timeline", headers=clerk)).json()["events"]
    assert tl[-1]["type"] == "complaint.overridden"
    assert tl[-1]["actor"] == "sup-1" and tl[-1]["reason"] == "门禁故障属于安全管理"
    rows = await db_rows(
        "SELECT aggregate_seq FROM (SELECT (envelope->>'aggregate_seq')::int AS aggregate_seq"
        " FROM intake.outbox WHERE envelope->>'aggregate_id' = $1) x ORDER BY 1",
        cid,
    )
    seqs = [r["aggregate_seq"] for r in rows]
    assert len(seqs) >= 3 and seqs == list(range(1, len(seqs) + 1))


async def test_every_channel_is_accepted(client, resources):
    # A company of its own, each complaint its own household and matter (no unit or place,
    # content without common words): a repeat would join an open case, three households
    # on one matter would make a group.
    company = await onboard(resources, f"CH{uuid4().hex[:6].upper()}", "渠道物业")
    clerk = company.token("intake_clerk")

    def alone(**over: object) -> dict[str, object]:
        return complaint(
            **{
                "content": f"{uuid4().int}",
                "unit": None,
                "place": None,
                "complainant": {"name": "李先生", "phone": f"136{uuid4().int % 10**8:08d}"},
                **over,
            }
        )

    channels = [
        "phone",
        "sms",
        "wechat",
        "letter",
        "email",
        "app",
        "website",
        "walk_in",
        "verbal",
        "government",
        "group",
        "call_center",
        "quality_dept",
        "media",
    ]
    for channel in channels:
        r = await client.post(
            "/v1/complaints",
            json=alone(channel=channel),
            headers=clerk,
        )
        assert r.status_code == 201, (channel, r.text)
        assert r.json()["channel"] == channel
    letter = await client.post(
        "/v1/complaints", json=alone(channel="letter", content="水管漏水 zz"), headers=clerk
    )
    assert letter.status_code == 201, letter.text
    assert letter.json()["grade"] == "complex"


async def test_history_cannot_be_rewritten(resources, company_a, client):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from propdesk.db.session import tenant_transaction
    from propdesk.tenancy import TenantContext

    clerk = company_a.token("intake_clerk")
    cid = (await client.post("/v1/complaints", json=complaint(), headers=clerk)).json()["id"]
    ctx = TenantContext.for_tenant(company_a.tenant_id)
    with pytest.raises(DBAPIError, match="append-only"):
        async with tenant_transaction(resources.sessions, ctx) as s:
            await s.execute(
                text("UPDATE intake.complaint_events SET reason = 'x' WHERE complaint_id = :c"),
                {"c": cid},
            )
