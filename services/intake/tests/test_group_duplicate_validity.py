"""Group complaints, duplicates, and the validity workflow on the real database."""

from __future__ import annotations

from uuid import uuid4

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _file(client, headers, room: str, phone: str, content: str, project="SUNRISE"):
    r = await client.post(
        "/v1/complaints",
        json={
            "project": project,
            "channel": "phone",
            "content": content,
            "place": "5号楼电梯",
            "unit": {"building": "5", "room": room},
            "complainant": {"name": "业主", "phone": phone},
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _timeline(client, headers, cid):
    r = await client.get(f"/v1/complaints/{cid}/timeline", headers=headers)
    return [e["type"] for e in r.json()["events"]]


async def test_three_households_make_a_major_group(client, company_b, db_rows):
    clerk = company_b.token("intake_clerk")
    first = await _file(client, clerk, "501", "13900000001", "5号楼电梯又坏了，困人")
    second = await _file(client, clerk, "502", "13900000002", "5号楼电梯坏了好几天")
    assert first["grade"] != "major" and second["grade"] != "major"
    assert first["group_case_id"] is None and second["case"]["kind"] == "new"
    third = await _file(client, clerk, "503", "13900000003", "电梯故障，5号楼没人修")
    assert third["grade"] == "major"
    assert third["case"]["kind"] == "group"
    assert third["case"]["household_count"] == 3
    assert third["case"]["notify_complainant"] is True
    group_id = third["group_case_id"]
    for earlier in (first, second):
        now = (await client.get(f"/v1/complaints/{earlier['id']}", headers=clerk)).json()
        assert now["grade"] == "major" and now["group_case_id"] == group_id
        assert now["grade_reasons"][0].startswith("major:group")
        types = await _timeline(client, clerk, earlier["id"])
        assert types[-2:] == ["complaint.regraded", "complaint.grouped"]
    assert "complaint.grouped" in await _timeline(client, clerk, third["id"])
    grouped = await db_rows(
        "SELECT envelope->'payload' AS p FROM intake.outbox WHERE event_type = 'complaint.grouped'"
        " AND envelope->'payload'->>'group_case_id' = $1",
        group_id,
    )
    assert len(grouped) == 3
    # A fourth household joins the same group.
    fourth = await _file(client, clerk, "501", "13900000009", "5号楼电梯还是坏的")
    assert fourth["group_case_id"] == group_id and fourth["grade"] == "major"


async def test_repeat_from_same_household_joins_the_open_case(client, company_b):
    clerk = company_b.token("intake_clerk")
    marker = uuid4().hex[:6]
    original = await _file(
        client, clerk, "1A", "13700000001", f"A栋门口垃圾堆积发臭 {marker}", project="MOON"
    )
    repeat = await _file(
        client, clerk, "1A", "13700000001", f"A栋门口垃圾堆积发臭没人管 {marker}", project="MOON"
    )
    assert repeat["duplicate_of"] == original["id"]
    assert repeat["case"]["kind"] == "duplicate"
    assert await _timeline(client, clerk, repeat["id"]) == [
        "complaint.received",
        "complaint.classified",
        "complaint.duplicate_joined",
    ]


async def test_invalidation_needs_another_supervisor(client, company_a, db_rows):
    clerk = company_a.token("intake_clerk", subject="clerk-7")
    sup_1 = company_a.token("cs_supervisor", subject="sup-1")
    director = company_a.token("director", subject="dir-1")
    c = await client.post(
        "/v1/complaints",
        json={"project": "SUNRISE", "channel": "phone", "content": "隔壁小区的噪音 " + uuid4().hex},
        headers=clerk,
    )
    cid = c.json()["id"]
    no_pending = await client.post(f"/v1/complaints/{cid}/invalidation/approve", headers=sup_1)
    assert no_pending.status_code == 409
    req = await client.post(
        f"/v1/complaints/{cid}/invalidation", json={"reason": "不属于本公司管理范围"}, headers=sup_1
    )
    assert req.status_code == 201, req.text
    twice = await client.post(
        f"/v1/complaints/{cid}/invalidation", json={"reason": "again"}, headers=clerk
    )
    assert twice.status_code == 409
    by_clerk = await client.post(f"/v1/complaints/{cid}/invalidation/approve", headers=clerk)
    assert by_clerk.status_code == 403
    own = await client.post(f"/v1/complaints/{cid}/invalidation/approve", headers=sup_1)
    assert own.status_code == 403 and own.json()["code"] == "own-request"
    ok = await client.post(
        f"/v1/complaints/{cid}/invalidation/approve", json={"comment": "同意"}, headers=director
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["complaint"]["validity"] == "invalid"
    assert ok.json()["complaint"]["status"] == "invalid"
    events = (await client.get(f"/v1/complaints/{cid}/timeline", headers=clerk)).json()["events"]
    assert [e["type"] for e in events][-2:] == [
        "complaint.invalidation_requested",
        "complaint.invalidation_approved",
    ]
    assert events[-2]["actor"] == "sup-1" and events[-1]["actor"] == "dir-1"
    # Never deleted: the row and its history stay.
    assert (await client.get(f"/v1/complaints/{cid}", headers=clerk)).status_code == 200


async def test_invalidation_rejected_and_flags(client, company_a):
    clerk = company_a.token("intake_clerk", subject="clerk-8")
    sup = company_a.token("cs_supervisor", subject="sup-2")
    c = await client.post(
        "/v1/complaints",
        json={"project": "SUNRISE", "channel": "sms", "content": "物业费乱收费 " + uuid4().hex},
        headers=clerk,
    )
    cid = c.json()["id"]
    await client.post(f"/v1/complaints/{cid}/invalidation", json={"reason": "恶意"}, headers=clerk)
    rej = await client.post(
        f"/v1/complaints/{cid}/invalidation/reject", json={"comment": "有效投诉"}, headers=sup
    )
    assert rej.status_code == 200 and rej.json()["status"] == "rejected"
    assert rej.json()["complaint"]["validity"] != "invalid"
    flag = await client.post(
        f"/v1/complaints/{cid}/flags", json={"flag": "malicious", "reason": "反复骚扰"}, headers=sup
    )
    assert flag.status_code == 201 and flag.json()["flags"] == ["malicious"]
    types = [
        e["type"]
        for e in (await client.get(f"/v1/complaints/{cid}/timeline", headers=clerk)).json()[
            "events"
        ]
    ]
    assert types[-3:] == [
        "complaint.invalidation_requested",
        "complaint.invalidation_rejected",
        "complaint.flagged",
    ]
