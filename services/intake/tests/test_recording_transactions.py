"""Which transaction records a complaint: new, duplicate and group complaints on a warm
directory cache run on the driver pool (no SQLAlchemy); a cold cache or a named earlier case
falls back to a session. Both carry the request's trace into the outbox."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import asyncpg
import pytest

from propdesk.settings import asyncpg_dsn
from propdesk.telemetry import install_test_exporter

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _body(room: str, phone: str, content: str, building: str = "7") -> dict:
    return {
        "project": "SUNRISE",
        "channel": "phone",
        "content": content,
        "unit": {"building": building, "room": room},
        "complainant": {"name": "业主", "phone": phone},
    }


def _recorded(exporter) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == "record complaint"]


async def test_plain_complaints_skip_sqlalchemy_and_keep_the_trace(client, company_a, db_rows):
    clerk = company_a.token("intake_clerk")
    marker = uuid4().hex[:8]
    # Warms the directory entries of this scope, project and unit (a miss → session).
    warm = await client.post(
        "/v1/complaints", json=_body("701", "13500000701", f"7号楼水压低 {marker}"), headers=clerk
    )
    assert warm.status_code == 201, warm.text
    exporter = install_test_exporter()
    r = await client.post(
        "/v1/complaints", json=_body("701", "13500000702", f"门禁卡失灵 {marker}"), headers=clerk
    )
    assert r.status_code == 201, r.text
    (span,) = _recorded(exporter)
    assert span.attributes["propdesk.recording.transaction"] == "driver"
    assert span.attributes["propdesk.case_kind"] == "new"
    rows = await db_rows(
        "SELECT trace_context->>'traceparent' AS tp FROM intake.outbox"
        " WHERE envelope->>'aggregate_id' = $1",
        r.json()["id"],
    )
    assert len(rows) == 2
    assert {row["tp"].split("-")[1] for row in rows} == {f"{span.context.trace_id:032x}"}


async def test_duplicates_and_groups_stay_on_the_driver(client, company_a):
    clerk = company_a.token("intake_clerk")
    marker = uuid4().hex[:8]
    # A building of its own: other tests' elevator complaints must not make a group first.
    building = f"Z{marker}"
    first = _body("711", "13500000711", f"电梯停运，困在里面 {marker}", building)
    assert (await client.post("/v1/complaints", json=first, headers=clerk)).status_code == 201
    exporter = install_test_exporter()
    again = await client.post("/v1/complaints", json=first, headers=clerk)
    assert again.status_code == 200 and again.json()["case"]["kind"] == "duplicate"
    second = _body("712", "13500000712", f"电梯停运好几天 {marker}", building)
    third = _body("713", "13500000713", f"电梯又停运了 {marker}", building)
    assert (await client.post("/v1/complaints", json=second, headers=clerk)).status_code == 201
    grouped = await client.post("/v1/complaints", json=third, headers=clerk)
    assert grouped.status_code == 201 and grouped.json()["case"]["kind"] == "group", grouped.text
    spans = _recorded(exporter)
    assert [s.attributes["propdesk.case_kind"] for s in spans] == ["duplicate", "new", "group"]
    assert {s.attributes["propdesk.recording.transaction"] for s in spans} == {"driver"}


async def test_a_named_earlier_case_falls_back_to_a_session(client, company_a):
    clerk = company_a.token("intake_clerk")
    marker = uuid4().hex[:8]
    body = _body("702", "13500000703", f"7号楼楼道灯不亮 {marker}")
    earlier = await client.post("/v1/complaints", json=body, headers=clerk)
    assert earlier.status_code == 201
    exporter = install_test_exporter()
    named = {
        **_body("703", "13500000704", f"车位被占 {marker}"),
        "previous_case": earlier.json()["reference"],
    }
    r = await client.post("/v1/complaints", json=named, headers=clerk)
    assert r.status_code == 201, r.text
    (span,) = _recorded(exporter)
    assert span.attributes["propdesk.recording.transaction"] == "session"


async def test_a_group_that_deadlocks_is_retried_not_a_500(client, company_a, intake_settings):
    """The member locks of a group complaint (id order) against a transaction that holds
    the same complaints in the other order, as a batch of work-order steps may:
    PostgreSQL aborts one side, and the recording tries again."""
    clerk = company_a.token("intake_clerk")
    marker = uuid4().hex[:8]

    def at_the_fountain(phone: str) -> dict:
        # One place of its own and words of their own: the three are one matter by place,
        # and nothing any other test filed joins them.
        words = "".join(chr(0x5000 + int(c, 16) * 16 + i) for i, c in enumerate(marker))
        return {
            "project": "SUNRISE",
            "channel": "phone",
            "category": "landscaping",
            "place": f"喷泉{marker}",
            "content": f"{words}{phone[-2:]}",
            "complainant": {"name": "业主", "phone": phone},
        }

    ids = []
    for phone in ("13500000721", "13500000722"):
        r = await client.post("/v1/complaints", json=at_the_fountain(phone), headers=clerk)
        assert r.status_code == 201 and r.json()["case"]["kind"] == "new", r.text
        ids.append(UUID(r.json()["id"]))
    first, second = sorted(ids)
    other = await asyncpg.connect(asyncpg_dsn(intake_settings.database_url))
    try:
        tx = other.transaction()
        await tx.start()
        lock = "SELECT 1 FROM intake.complaints WHERE id = $1 FOR UPDATE"
        await other.execute(lock, second)
        third = asyncio.create_task(
            client.post("/v1/complaints", json=at_the_fountain("13500000723"), headers=clerk)
        )
        # The recording locks `first`, then waits for `second`; now wait for `first`.
        await asyncio.sleep(0.3)
        try:
            await other.execute(lock, first)
        except asyncpg.exceptions.DeadlockDetectedError:
            pass  # PostgreSQL may pick this side instead; either way no 500
        await tx.rollback()
        r = await third
    finally:
        await other.close()
    assert r.status_code == 201, r.text
    assert r.json()["case"]["kind"] == "group"
