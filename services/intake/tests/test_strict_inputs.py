"""Instants and booleans the intake API takes are what docs/api.md says: ISO 8601 with a
UTC offset (a number is not a Unix time) and JSON true/false (not "yes", "on", 1); query
booleans are true/false. Anything else is a 422 problem naming the field and the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from .conftest import Company, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC)
# A Unix time of an hour ago, in seconds and milliseconds, also as text: what pydantic's
# lax mode would have recorded as the time of the complaint.
AN_HOUR_AGO = int((NOW - timedelta(hours=1)).timestamp())
NOT_INSTANTS = [AN_HOUR_AGO, AN_HOUR_AGO * 1000, str(AN_HOUR_AGO), float(AN_HOUR_AGO), True]
NOT_JSON_BOOLS = ["yes", "on", "1", 1, 0, "f", "true", None]


@pytest.fixture
async def company(resources) -> Company:
    """A company of its own: complaints of other tests never make a group with these."""
    return await onboard(resources, f"S{uuid4().hex[:6].upper()}", "严格物业")


def _complaint(**over: object) -> dict[str, object]:
    return {
        "project": "SUNRISE",
        "channel": "phone",
        "content": f"电梯坏了 {uuid4().hex[:8]}",
        "complainant": {"phone": f"137{uuid4().int % 10**8:08d}"},
        **over,
    }


def _errors(r: Any) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


async def test_a_complaint_instant_is_iso8601_text_never_a_unix_time(client, company) -> None:
    clerk = company.token("intake_clerk")
    for number in NOT_INSTANTS:
        for name in ("received_at", "occurred_at"):
            r = await client.post(
                "/v1/complaints", headers=clerk, json=_complaint(**{name: number})
            )
            assert _errors(r) == [(f"body.{name}", "iso8601")], (name, number)
            assert "ISO 8601" in r.json()["errors"][0]["message"]
    # A time without an offset keeps its rule.
    r = await client.post(
        "/v1/complaints", headers=clerk, json=_complaint(received_at="2026-11-26T10:00:00")
    )
    assert _errors(r) == [("body.received_at", "timezone_required")]
    received = (NOW - timedelta(hours=1)).astimezone(UTC).replace(microsecond=0)
    r = await client.post(
        "/v1/complaints",
        headers=clerk,
        json=_complaint(
            received_at=received.isoformat(),
            occurred_at=(received - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        ),
    )
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["received_at"]) == received


async def test_second_complaint_is_json_true_or_false(client, company) -> None:
    clerk = company.token("intake_clerk")
    for value in NOT_JSON_BOOLS:
        r = await client.post(
            "/v1/complaints", headers=clerk, json=_complaint(second_complaint=value)
        )
        assert _errors(r) == [("body.second_complaint", "bool_type")], value
    r = await client.post("/v1/complaints", headers=clerk, json=_complaint(second_complaint=True))
    assert r.status_code == 201, r.text
    assert r.json()["second_complaint"]["prior_cases"] == 1
    r = await client.post("/v1/complaints", headers=clerk, json=_complaint(second_complaint=False))
    assert r.status_code == 201, r.text
    assert r.json()["second_complaint"]["prior_cases"] == 0


async def test_list_time_filters_are_iso8601_text_never_a_unix_time(client, company) -> None:
    clerk = company.token("intake_clerk")
    received = (NOW - timedelta(hours=2)).astimezone(UTC).replace(microsecond=0)
    r = await client.post(
        "/v1/complaints", headers=clerk, json=_complaint(received_at=received.isoformat())
    )
    assert r.status_code == 201, r.text
    recorded = r.json()
    for name in ("received_from", "received_to"):
        for number in (str(AN_HOUR_AGO), str(AN_HOUR_AGO * 1000)):
            r = await client.get("/v1/complaints", headers=clerk, params={name: number})
            assert _errors(r) == [(f"query.{name}", "iso8601")], (name, number)
    r = await client.get(
        "/v1/complaints",
        headers=clerk,
        params={
            "received_from": (received - timedelta(seconds=1)).isoformat(),
            "received_to": (received + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
        },
    )
    assert r.status_code == 200, r.text
    assert recorded["id"] in [c["id"] for c in r.json()["items"]]
    r = await client.get(
        "/v1/complaints", headers=clerk, params={"received_from": "2026-11-26T10:00:00"}
    )
    assert _errors(r) == [("query.received_from", "timezone_required")]  # its rule, as before


async def test_a_query_boolean_is_true_or_false(client, company) -> None:
    # The text true or false (any letter case), nothing else.
    admin = company.token("tenant_admin")
    for value in ("yes", "on", "1", "0", "f", "", "maybe"):
        r = await client.get("/v1/staff", headers=admin, params={"active": value})
        assert _errors(r) == [("query.active", "bool_parsing")], value
    for value in ("true", "True"):
        r = await client.get("/v1/staff", headers=admin, params={"active": value})
        assert r.status_code == 200 and "S001" in [s["code"] for s in r.json()["items"]], r.text
    r = await client.get("/v1/staff", headers=admin, params={"active": "false"})
    assert r.status_code == 200 and "S001" not in [s["code"] for s in r.json()["items"]], r.text


async def test_numbers_are_json_numbers_never_text_or_booleans(client, company) -> None:
    clerk = company.token("intake_clerk")
    for value in ("31.2", True, "31"):
        r = await client.post("/v1/complaints", headers=clerk, json=_complaint(lat=value, long=121))
        assert _errors(r) == [("body.lat", "float_type")], value
    r = await client.post("/v1/complaints", headers=clerk, json=_complaint(lat=31, long=121.47))
    assert r.status_code == 201, r.text
    admin = company.token("tenant_admin")
    for value in ("60", True, 60.5):
        r = await client.post(
            "/v1/api-keys",
            headers=admin,
            json={"name": f"desk {uuid4().hex[:6]}", "rate_limit_per_minute": value},
        )
        rule = "int_from_float" if isinstance(value, float) else "int_type"
        assert _errors(r) == [("body.rate_limit_per_minute", rule)], value
    r = await client.post(
        "/v1/api-keys", headers=admin, json={"name": "desk", "rate_limit_per_minute": 60.0}
    )
    assert r.status_code == 201 and r.json()["rate_limit_per_minute"] == 60, r.text
