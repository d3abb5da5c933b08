"""If-Match on a work order's steps: a step that applies only to the order as its client
read it (api/preconditions.py). Without it a supervisor's accept taken after a
reassignment accepts for the new handler, who never saw the order."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from dispatch.testing import Tenant, engineering_order

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _steps(client, url: str, headers: dict[str, str]) -> list[str]:
    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return [s["action"] for s in r.json()["steps"]]


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body = r.json()
    assert body["code"] == code, body
    return body


async def test_a_step_on_an_order_changed_since_it_was_read_is_412(
    res, tenant: Tenant, client
) -> None:
    url, engineer = await engineering_order(res, tenant)
    supervisor = tenant.token(uuid4(), "cs_supervisor")
    read = await client.get(url, headers=supervisor)
    assert read.status_code == 200 and read.headers["etag"] == f'"{read.json()["seq"]}"'
    as_read = read.headers["etag"]
    # Meanwhile the order goes to the other engineer.
    other = tenant.handler_b if engineer == tenant.handler_a else tenant.handler_a
    r = await client.post(
        f"{url}/reassign",
        headers=supervisor,
        json={"handler_id": str(other), "reason": "换人"},
    )
    assert r.status_code == 200, r.text
    now = r.json()["seq"]
    assert r.headers["etag"] == f'"{now}"'  # a step's answer carries the order's new tag
    # The supervisor's accept, for the engineer he saw: refused, nothing recorded.
    r = await client.post(f"{url}/accept", headers={**supervisor, "If-Match": as_read}, json={})
    body = _problem(r, 412, "precondition-failed")
    assert (body["current_seq"], body["current_state"]) == (now, "dispatched")
    assert r.headers["etag"] == f'"{now}"'
    assert await _steps(client, url, supervisor) == ["dispatch", "reassign"]
    # Read again: the tag of the order as it is now lets the step through.
    r = await client.post(
        f"{url}/accept", headers={**supervisor, "If-Match": f'"{now}", "99"'}, json={}
    )
    assert r.status_code == 200 and r.json()["handler_id"] == str(other), r.text
    assert (await client.get(url, headers=supervisor)).headers["etag"] == f'"{now + 1}"'
    # Step after step, each answer's tag is the next one's If-Match.
    r = await client.post(
        f"{url}/progress",
        headers={**tenant.handler(other), "If-Match": r.headers["etag"]},
        json={"note": "上门查看"},
    )
    assert r.status_code == 200 and r.headers["etag"] == f'"{now + 2}"', r.text


async def test_if_match_forms(res, tenant: Tenant, client) -> None:
    url, engineer = await engineering_order(res, tenant)
    me = tenant.handler(engineer)
    seq = (await client.get(url, headers=me)).json()["seq"]
    # A weak tag never matches (strong comparison), even the order's own.
    r = await client.post(f"{url}/accept", headers={**me, "If-Match": f'W/"{seq}"'}, json={})
    _problem(r, 412, "precondition-failed")
    # A tag may hold a comma: one tag, not two, and not this order's.
    r = await client.post(f"{url}/accept", headers={**me, "If-Match": '"1,2"'}, json={})
    _problem(r, 412, "precondition-failed")
    for malformed in (str(seq), "", '"1" junk', "W/1", f'*, "{seq}"', '"1" "2"'):
        r = await client.post(f"{url}/accept", headers={**me, "If-Match": malformed}, json={})
        body = _problem(r, 400, "malformed-precondition")
        assert [(e["field"], e["rule"]) for e in body["errors"]] == [
            ("header.If-Match", "entity_tag")
        ], malformed
    assert await _steps(client, url, me) == ["dispatch"]
    # A request refused anyway keeps its own answer (RFC 9110 §13.2.1): no credential is
    # a 401, another handler's step a 403, whatever the header says.
    r = await client.post(f"{url}/accept", headers={"If-Match": "1"}, json={})
    _problem(r, 401, "unauthenticated")
    other = tenant.handler_b if engineer == tenant.handler_a else tenant.handler_a
    r = await client.post(
        f"{url}/accept", headers={**tenant.handler(other), "If-Match": '"99"'}, json={}
    )
    _problem(r, 403, "forbidden")
    # `*`: any version of an order that exists; no header: as before.
    r = await client.post(f"{url}/accept", headers={**me, "If-Match": "*"}, json={})
    assert r.status_code == 200, r.text
    r = await client.post(f"{url}/progress", headers=me, json={"note": "上门查看"})
    assert r.status_code == 200, r.text
    # An order the caller cannot see stays a 404, whatever the header says.
    r = await client.post(
        f"/v1/work-orders/{uuid4()}/accept", headers={**me, "If-Match": '"1"'}, json={}
    )
    _problem(r, 404, "work-order-not-found")


async def test_openapi_documents_if_match_412_and_etag(client) -> None:
    """A client generated from /openapi.json learns of the tag and the precondition: every
    step route takes If-Match and may answer 412 with a problem; the order's read and each
    step's answer carry the ETag."""
    doc = (await client.get("/openapi.json")).json()
    conditional = {
        path: op
        for path, item in doc["paths"].items()
        for op in item.values()
        if any(p["in"] == "header" and p["name"] == "If-Match" for p in op.get("parameters", []))
    }
    assert len(conditional) == 11, sorted(conditional)
    for path, op in conditional.items():
        assert path.startswith("/v1/work-orders/{work_order_id}/"), path
        problem = op["responses"]["412"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}, path
        assert "precondition-failed" in op["responses"]["412"]["description"], path
        assert "ETag" in op["responses"]["200"]["headers"], path
    read = doc["paths"]["/v1/work-orders/{work_order_id}"]["get"]["responses"]["200"]
    assert "ETag" in read["headers"]
