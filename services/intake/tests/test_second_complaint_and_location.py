"""Second complaints (二次投诉), forwarded "dissatisfied" results, email, lat/long and
device id, through the HTTP APIs on the real database."""

from __future__ import annotations

from uuid import uuid4

import pytest

from .conftest import Company, make_key, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def company(resources) -> Company:
    """A company of its own: complaints of other tests never make a group with these."""
    return await onboard(resources, f"Q{uuid4().hex[:6].upper()}", "二次物业")


def body(**over: object) -> dict[str, object]:
    b: dict[str, object] = {
        "project": "SUNRISE",
        "channel": "phone",
        "content": f"路灯坏了 {uuid4().hex[:6]}",
        # A phone of its own per complaint: other tests' cases are never the same household.
        "complainant": {"name": "赵女士", "phone": f"139{uuid4().int % 10**8:08d}"},
    }
    b.update(over)
    return b


async def _timeline(client, cid: str, headers: dict[str, str]) -> list[dict]:
    r = await client.get(f"/v1/complaints/{cid}/timeline", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["events"]


async def test_caller_says_second_complaint(client, company, db_rows):
    clerk = company.token("intake_clerk")
    r = await client.post("/v1/complaints", json=body(second_complaint=True), headers=clerk)
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["grade"] == "complex"
    assert any(g.startswith("complex:second_complaint") for g in c["grade_reasons"])
    assert c["second_complaint"] == {"prior_cases": 1, "previous_case_id": None}
    [row] = await db_rows(
        "SELECT prior_cases, grade_reasons FROM intake.complaints WHERE id = $1::uuid", c["id"]
    )
    assert row["prior_cases"] == 1
    classified = [
        e for e in await _timeline(client, c["id"], clerk) if e["type"] == "complaint.classified"
    ]
    assert "second complaint" in classified[0]["reason"]
    assert classified[0]["data"]["second_complaint_basis"] == (
        "the caller says it is a second complaint"
    )


async def test_previous_case_chain_second_then_repeated_is_major(client, company, db_rows):
    clerk = company.token("intake_clerk")
    who = {"name": "孙先生", "phone": "13811112222"}
    first = (await client.post("/v1/complaints", json=body(complainant=who), headers=clerk)).json()
    assert first["grade"] == "simple" and first["second_complaint"]["prior_cases"] == 0
    # The same phone naming its own case while it is open: a repeat call, which joins it.
    same = await client.post(
        "/v1/complaints",
        json=body(previous_case=first["reference"], complainant=who),
        headers=clerk,
    )
    assert same.status_code == 200, same.text
    assert same.json()["case"]["joined"] == first["id"] and same.json()["calls"] == 2
    # Other callers (own phones, own words: no duplicate, no group) name the earlier cases.
    second = await client.post(
        "/v1/complaints",
        json=body(previous_case=first["reference"], content="东门照明不亮"),
        headers=clerk,
    )
    assert second.status_code == 201, second.text
    assert second.json()["grade"] == "complex"
    assert second.json()["second_complaint"]["previous_case_id"] == first["id"]
    third = await client.post(
        "/v1/complaints",
        json=body(previous_case=second.json()["id"], content="车库照明故障"),
        headers=clerk,
    )
    assert third.status_code == 201, third.text
    t = third.json()
    assert t["grade"] == "major" and t["second_complaint"]["prior_cases"] == 2
    assert t["grade_reasons"][0].startswith("major:repeated_dissatisfaction")
    assert second.json()["reference"] in t["grade_reasons"][0]
    [out] = await db_rows(
        "SELECT envelope FROM intake.outbox WHERE envelope->>'aggregate_id' = $1"
        " AND event_type = 'complaint.received'",
        t["id"],
    )
    import orjson

    payload = (
        orjson.loads(out["envelope"])["payload"]
        if isinstance(out["envelope"], str)
        else out["envelope"]["payload"]
    )
    assert payload["prior_cases"] == 2 and payload["previous_case_id"] == second.json()["id"]


async def test_previous_case_must_exist_in_the_project(client, company, company_b):
    # Another company's reference may name one of ours (both have a project SUNRISE); its
    # id never does.
    clerk = company.token("intake_clerk")
    other = (
        await client.post("/v1/complaints", json=body(), headers=company_b.token("intake_clerk"))
    ).json()
    moon = await client.post("/v1/complaints", json=body(project="MOON"), headers=clerk)
    for ref in ("SUNRISE-19990101-0001", other["id"], moon.json()["id"], moon.json()["reference"]):
        r = await client.post("/v1/complaints", json=body(previous_case=ref), headers=clerk)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "body.previous_case"


async def test_handled_case_of_the_household_makes_a_second_complaint(client, company, resources):
    """A household comes back about a matter whose case was handled (closed, not invalid)."""
    from sqlalchemy import text

    from propdesk.db.session import tenant_transaction
    from propdesk.tenancy import TenantContext

    clerk = company.token("intake_clerk")
    place = f"3号门岗 {uuid4().hex[:6]}"
    unit = {"building": "1", "room": "103"}
    phone = {"name": "钱先生", "phone": f"137{uuid4().int % 10**8:08d}"}
    first = (
        await client.post(
            "/v1/complaints",
            json=body(
                content="保安态度恶劣", place=place, unit=unit, channel="wechat", complainant=phone
            ),
            headers=clerk,
        )
    ).json()
    # The case is handled elsewhere (dispatch closes it); here its status is set directly.
    ctx = TenantContext.for_tenant(company.tenant_id)
    async with tenant_transaction(resources.sessions, ctx) as s:
        await s.execute(
            text("UPDATE intake.complaints SET status = 'closed' WHERE id = :i"),
            {"i": first["id"]},
        )
    again = await client.post(
        "/v1/complaints",
        json=body(
            content="保安态度还是很差", place=place, unit=unit, channel="wechat", complainant=phone
        ),
        headers=clerk,
    )
    assert again.status_code == 201, again.text
    a = again.json()
    assert a["case"]["kind"] == "new"  # not a duplicate: the first case is no longer open
    assert a["second_complaint"] == {"prior_cases": 1, "previous_case_id": first["id"]}
    assert any(first["reference"] in g for g in a["grade_reasons"])
    events = await _timeline(client, a["id"], clerk)
    basis = events[1]["data"]["second_complaint_basis"]
    assert first["reference"] in basis and "same place" in basis


async def test_forwarded_dissatisfied_is_major_and_needs_a_forwarder(client, company):
    clerk = company.token("intake_clerk")
    ok = await client.post(
        "/v1/complaints",
        json=body(channel="quality_dept", forwarded_result="dissatisfied"),
        headers=clerk,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["grade"] == "major"
    assert ok.json()["forwarded_result"] == "dissatisfied"
    assert ok.json()["grade_reasons"][0].startswith("major:forwarded_dissatisfied")
    events = await _timeline(client, ok.json()["id"], clerk)
    assert "forwarded_dissatisfied" in events[1]["reason"]
    for channel, value in (
        ("phone", "dissatisfied"),
        ("government", "dissatisfied"),
        ("group", "satisfied"),
    ):
        bad = await client.post(
            "/v1/complaints",
            json=body(channel=channel, forwarded_result=value),
            headers=clerk,
        )
        assert bad.status_code == 422, (channel, bad.text)
        assert bad.json()["errors"][0]["field"] == "body.forwarded_result"


async def test_open311_forwarded_dissatisfied_and_second_complaint(client, company, resources):
    key = (await make_key(resources, company, projects=["SUNRISE"]))["X-API-Key"]
    r = await client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": key,
            "service_code": "facility_repair",
            "description": f"回访不满意，电梯还是坏 {uuid4().hex[:6]}",
            "attribute[channel]": "call_center",
            "attribute[forwarded_result]": "dissatisfied",
            "attribute[second_complaint]": "true",
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()[0]["service_request_id"]
    got = await client.get(f"/v1/complaints/{cid}", headers=company.token("cs_supervisor"))
    g = got.json()
    assert g["grade"] == "major" and g["forwarded_result"] == "dissatisfied"
    assert g["second_complaint"]["prior_cases"] == 1
    bad = await client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": key,
            "service_code": "facility_repair",
            "description": "x",
            "attribute[previous_case]": "NOPE-1",
        },
    )
    assert bad.status_code == 400
    assert bad.json()[0]["description"].startswith("attribute[previous_case]:")


async def test_email_lat_long_device(client, company):
    clerk = company.token("intake_clerk")
    r = await client.post(
        "/v1/complaints",
        json=body(
            complainant={"name": "Ann Lee", "email": "ann@example.com"},
            lat=31.2304,
            long=121.4737,
            device_id="kiosk-3",
        ),
        headers=clerk,
    )
    assert r.status_code == 201, r.text
    c = (await client.get(f"/v1/complaints/{r.json()['id']}", headers=clerk)).json()
    assert c["complainant"]["email"] == "ann@example.com"
    assert (c["lat"], c["long"], c["device_id"]) == (31.2304, 121.4737, "kiosk-3")


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"lat": 91, "long": 0}, "body.lat"),
        ({"lat": 0, "long": -180.5}, "body.long"),
        ({"lat": 30}, "body.long"),
        ({"long": 120}, "body.long"),
        ({"lat": "north", "long": 1}, "body.lat"),
        ({"complainant": {"email": "not-an-address"}}, "body.complainant.email"),
        ({"complainant": {"email": "a@b"}}, "body.complainant.email"),
        ({"second_complaint": "perhaps"}, "body.second_complaint"),
        ({"device_id": ""}, "body.device_id"),
    ],
)
async def test_bad_location_and_contact(client, company, over, field):
    r = await client.post(
        "/v1/complaints", json=body(**over), headers=company.token("intake_clerk")
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [field]
