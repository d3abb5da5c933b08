"""Group complaints, duplicates, and the validity workflow on the real database."""

from __future__ import annotations

from uuid import uuid4

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _body(room: str, phone: str, content: str, project="SUNRISE", **more) -> dict:
    building = "5" if project == "SUNRISE" else "A"
    return {
        "project": project,
        "channel": "phone",
        "content": content,
        "place": "5号楼电梯" if project == "SUNRISE" else "A栋门口",
        "unit": {"building": building, "room": room},
        "complainant": {"name": "业主", "phone": phone},
        **more,
    }


async def _file(
    client, headers, room: str, phone: str, content: str, project="SUNRISE", status=201
):
    r = await client.post(
        "/v1/complaints", json=_body(room, phone, content, project), headers=headers
    )
    assert r.status_code == status, r.text
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
        assert now["grade_reasons"][0] == third["grade_reasons"][0], now["grade_reasons"]
        assert now["grade_reasons"][0].startswith("major:group")
        # Raised by the group: no longer "no major or complex trigger".
        assert not any(r.startswith("simple:") for r in now["grade_reasons"]), now
        types = await _timeline(client, clerk, earlier["id"])
        assert types[-2:] == ["complaint.regraded", "complaint.grouped"]
    assert "complaint.grouped" in await _timeline(client, clerk, third["id"])
    grouped = await db_rows(
        "SELECT envelope->'payload' AS p FROM intake.outbox WHERE event_type = 'complaint.grouped'"
        " AND envelope->'payload'->>'group_case_id' = $1",
        group_id,
    )
    assert len(grouped) == 3
    # Household 501 again (another phone, same unit): a duplicate of its open case, which
    # is in the group. The household is already counted: the group stays at 3.
    again = await _file(client, clerk, "501", "13900000009", "5号楼电梯还是坏的", status=200)
    assert again["id"] == first["id"] and again["case"]["kind"] == "duplicate"
    assert again["group_case_id"] == group_id and again["calls"] == 2
    [group] = await db_rows(
        "SELECT household_count FROM intake.group_cases WHERE id = $1::uuid", group_id
    )
    assert group["household_count"] == 3
    grouped = await db_rows(
        "SELECT 1 FROM intake.outbox WHERE event_type = 'complaint.grouped'"
        " AND envelope->'payload'->>'group_case_id' = $1",
        group_id,
    )
    assert len(grouped) == 3
    # A fourth household (a unit not onboarded: known by its phone) joins the same group.
    fourth = await _file(client, clerk, "504", "13900000004", "5号楼电梯还是坏的")
    assert fourth["case"]["kind"] == "group" and fourth["case"]["household_count"] == 4
    assert fourth["group_case_id"] == group_id and fourth["grade"] == "major"


async def test_repeat_from_same_household_joins_the_open_case(client, company_b, db_rows):
    clerk = company_b.token("intake_clerk", subject="clerk-dup")
    marker = uuid4().hex[:6]
    original = await _file(
        client, clerk, "1A", "13700000001", f"A栋门口垃圾堆积发臭 {marker}", project="MOON"
    )
    assert original["calls"] == 1 and original["last_call_at"] is None
    r = await client.post(
        "/v1/complaints",
        json=_body(
            "1A",
            "13700000001",
            f"A栋门口垃圾堆积发臭没人管 {marker}",
            project="MOON",
            channel="wechat",
            demand="今天清走",
            receiver="小李",
            external_reference=f"WX-{marker}",
        ),
        headers=clerk,
    )
    # Nothing new: the answer is the open case, and says so.
    assert r.status_code == 200, r.text
    joined = r.json()
    assert joined["id"] == original["id"] and joined["reference"] == original["reference"]
    assert joined["content"] == original["content"]  # the case, not the call
    assert joined["calls"] == 2 and joined["last_call_at"] is not None
    assert joined["version"] == original["version"] + 1
    case = joined["case"]
    assert case["kind"] == "duplicate" and case["calls"] == 2
    assert (case["joined"], case["reference"]) == (original["id"], original["reference"])
    assert case["reason"].startswith("same household, open case")
    assert "duplicate_of" not in joined
    got = (await client.get(f"/v1/complaints/{original['id']}", headers=clerk)).json()
    assert got["calls"] == 2 and got["version"] == joined["version"]

    # The call is on the case's timeline, with what the caller said.
    events = (await client.get(f"/v1/complaints/{original['id']}/timeline", headers=clerk)).json()[
        "events"
    ]
    assert [e["type"] for e in events] == [
        "complaint.received",
        "complaint.classified",
        "complaint.duplicate_joined",
    ]
    call = events[-1]
    assert call["actor"] == "clerk-dup" and "小李" in call["reason"] and "wechat" in call["reason"]
    assert call["data"]["channel"] == "wechat" and call["data"]["calls"] == 2
    assert call["data"]["content"] == f"A栋门口垃圾堆积发臭没人管 {marker}"
    assert call["data"]["demand"] == "今天清走"
    assert call["data"]["external_reference"] == f"WX-{marker}"
    assert call["data"]["complainant_phone"] == "13700000001"
    assert call["data"]["received_at"] and call["data"]["reason"] == case["reason"]

    # One complaint row, one complaint.received, one complaint.duplicate_joined on the case.
    rows = await db_rows("SELECT id FROM intake.complaints WHERE content LIKE $1", f"%{marker}%")
    assert [str(r["id"]) for r in rows] == [original["id"]]
    received = await db_rows(
        "SELECT 1 FROM intake.outbox WHERE event_type = 'complaint.received'"
        " AND envelope->'payload'->>'content' LIKE $1",
        f"%{marker}%",
    )
    assert len(received) == 1
    dup_events = await db_rows(
        "SELECT (envelope->>'aggregate_seq')::int AS seq, envelope->'payload' AS p"
        " FROM intake.outbox WHERE event_type = 'complaint.duplicate_joined'"
        " AND envelope->>'aggregate_id' = $1",
        original["id"],
    )
    assert len(dup_events) == 1 and dup_events[0]["seq"] == joined["version"]

    # A third call with an Idempotency-Key: a retry replays the same 200 and counts nothing.
    third = _body("1A", "13700000001", f"A栋门口垃圾还在 {marker}", project="MOON")
    key = {**clerk, "Idempotency-Key": f"dup-{marker}"}
    first_try = await client.post("/v1/complaints", json=third, headers=key)
    retry = await client.post("/v1/complaints", json=third, headers=key)
    assert first_try.status_code == retry.status_code == 200, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json() == first_try.json() and retry.json()["calls"] == 3
    got = (await client.get(f"/v1/complaints/{original['id']}", headers=clerk)).json()
    assert got["calls"] == 3
    dup_events = await db_rows(
        "SELECT 1 FROM intake.outbox WHERE event_type = 'complaint.duplicate_joined'"
        " AND envelope->>'aggregate_id' = $1",
        original["id"],
    )
    assert len(dup_events) == 2


async def test_a_joined_call_leaves_no_gap_in_the_days_references(client, company_b):
    """A duplicate draws no reference number: the next case of the project and day gets the
    number right after the last case's."""
    clerk = company_b.token("intake_clerk")
    marker = uuid4().hex[:6]
    first = await _file(client, clerk, "2B", "13700000021", f"A栋门口路灯不亮 {marker}", "MOON")
    joined = await _file(
        client, clerk, "2B", "13700000021", f"A栋门口路灯还是不亮 {marker}", "MOON", status=200
    )
    assert joined["case"]["kind"] == "duplicate"
    other = _body("3C", "13700000031", f"车库收费不合理 {marker}", "MOON", category="fees")
    r = await client.post("/v1/complaints", json=other, headers=clerk)
    assert r.status_code == 201, r.text
    prefix, number = first["reference"].rsplit("-", 1)
    assert r.json()["reference"] == f"{prefix}-{int(number) + 1:04d}"


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


async def test_a_group_keeps_an_override_committed_while_it_was_recorded(
    client, company_b, db_rows, monkeypatch
):
    """A staff override locks the complaint row, not the project: one committed between
    the group complaint's read of the matter and its lock of the members must survive."""
    from intake.store import recording

    clerk = company_b.token("intake_clerk")
    supervisor = company_b.token("cs_supervisor", subject="sup-race")

    async def file(room: str, content: str) -> dict:
        # A place of its own: no other test's open cases share this matter.
        body = _body(room, f"13900000{room}", content, place="7号楼地下车库 竞态测试")
        r = await client.post("/v1/complaints", json=body, headers=clerk)
        assert r.status_code == 201, r.text
        return r.json()

    first = await file("601", "7号楼地下车库水管爆裂漏水")
    await file("602", "7号楼地下车库水管漏水")
    real_lock_members = recording.lock_members

    async def override_first_then_lock(conn, ids):
        r = await client.post(
            f"/v1/complaints/{first['id']}/classification",
            json={"grade": "complex", "reason": "业主多次来电 竞态"},
            headers=supervisor,
        )
        assert r.status_code == 200, r.text
        return await real_lock_members(conn, ids)

    monkeypatch.setattr(recording, "lock_members", override_first_then_lock)
    third = await file("603", "7号楼地下车库水管漏水没人修")
    assert third["case"]["kind"] == "group"
    now = (await client.get(f"/v1/complaints/{first['id']}", headers=clerk)).json()
    # The group went by the grade read under the lock (the override's), not the one read
    # before it: a staff override stands, so the member is linked but not raised.
    assert now["grade"] == "complex" and now["group_case_id"] == third["group_case_id"]
    assert now["grade_reasons"] == ["complex:staff_override — 业主多次来电 竞态"]
    regraded = await db_rows(
        "SELECT 1 FROM intake.outbox WHERE event_type = 'complaint.regraded'"
        " AND envelope->'payload'->>'complaint_id' = $1",
        first["id"],
    )
    assert regraded == []
    types = await _timeline(client, clerk, first["id"])
    assert types[-3:] == [
        "complaint.overridden",
        "complaint.grouped",
        "complaint.regrade_withheld",
    ]


async def test_a_staff_override_is_not_undone_when_the_group_grows(client, company_b, db_rows):
    """A supervisor's override of a group member (with a reason) is a person's decision: a
    fourth household joining the group does not raise the member back to major; the group
    still links it, and its timeline says the upgrade was not applied and why."""
    clerk = company_b.token("intake_clerk", subject="clerk-override")
    supervisor = company_b.token("cs_supervisor", subject="sup-override")
    place = f"9号楼屋顶 {uuid4().hex[:6]}"

    async def file(room: str, content: str) -> dict:
        # A building of its own (not onboarded: recorded by its text), so no other test's
        # open cases share the matter.
        body = _body(
            room,
            f"13800{uuid4().int % 10**6:06d}",
            content,
            place=place,
            unit={"building": "9", "room": room},
        )
        r = await client.post("/v1/complaints", json=body, headers=clerk)
        assert r.status_code == 201, r.text
        return r.json()

    first = await file("701", "9号楼屋顶漏水，天花板滴水")
    await file("702", "9号楼屋顶漏水严重")
    third = await file("703", "9号楼屋顶漏水没人修")
    assert third["case"]["kind"] == "group"
    group_id = third["group_case_id"]
    grouped = (await client.get(f"/v1/complaints/{first['id']}", headers=clerk)).json()
    assert grouped["grade"] == "major" and grouped["group_case_id"] == group_id
    overridden = await client.post(
        f"/v1/complaints/{first['id']}/classification",
        json={"grade": "simple", "reason": "仅本户顶层渗水，已当场处理"},
        headers=supervisor,
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["grade"] == "simple"
    version = overridden.json()["version"]

    fourth = await file("704", "9号楼屋顶漏水，家里也滴水")
    assert fourth["case"]["kind"] == "group" and fourth["case"]["household_count"] == 4
    assert fourth["group_case_id"] == group_id and fourth["grade"] == "major"
    now = (await client.get(f"/v1/complaints/{first['id']}", headers=clerk)).json()
    assert now["grade"] == "simple", now["grade_reasons"]
    assert now["grade_reasons"] == ["simple:staff_override — 仅本户顶层渗水，已当场处理"]
    assert now["group_case_id"] == group_id
    assert now["version"] == version  # nothing changed, so no event either
    regraded = await db_rows(
        "SELECT envelope->'payload'->>'grade' AS grade FROM intake.outbox"
        " WHERE event_type = 'complaint.regraded' AND envelope->'payload'->>'complaint_id' = $1",
        first["id"],
    )
    assert [r["grade"] for r in regraded] == ["major"]  # the one when the group formed
    timeline = (await client.get(f"/v1/complaints/{first['id']}/timeline", headers=clerk)).json()[
        "events"
    ]
    last = timeline[-1]
    assert last["type"] == "complaint.regrade_withheld"
    assert "staff override" in last["reason"] and "仅本户顶层渗水" in last["reason"]
    assert last["data"]["household_count"] == 4
    assert last["data"]["withheld_grade"] == "major" and last["data"]["grade"] == "simple"
