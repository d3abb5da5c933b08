"""complaint.classified carries the place (intake passes it): a place rule routes the work
order through the real flow, containment included, and other places keep the default."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

from dispatch.flows.dispatching import dispatch_classified
from dispatch.testing import seed_tenant
from propdesk.db.session import tenant_transaction
from propdesk.events.contracts.complaint import ComplaintClassified

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


async def test_place_rule_routes_the_work_order(res, client) -> None:
    t = await seed_tenant(res)  # rules of its own: other tests' rules never interfere
    admin = t.token(uuid4(), "tenant_admin")
    r = await client.post(
        "/v1/routing-rules",
        headers=admin,
        json={"department": "cs", "place": "地下车库", "note": "车库由客服中心统一协调"},
    )
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]

    async def dispatch(place: str | None):
        c = t.classified(reference="TS-PLACE", place=place)
        async with tenant_transaction(res.sessions, t.ctx()) as session:
            wo = await dispatch_classified(session, t.tenant_id, c, now=TUESDAY_10)
        view = await client.get(f"/v1/work-orders/{wo}", headers=admin)
        assert view.status_code == 200, view.text
        return view.json()

    in_garage = await dispatch("地下车库B2层入口")
    assert in_garage["department_code"] == "cs"
    assert in_garage["rule_id"] == f"tenant:{rule_id}"
    assert "地下车库" in in_garage["routing_reason"]
    elsewhere = await dispatch("3号楼大堂")
    assert elsewhere["department_code"] == "eng"
    assert elsewhere["rule_id"] == "default:category:facility_repair"
    unknown = await dispatch(None)
    assert unknown["department_code"] == "eng"


def test_classified_without_place_still_parses() -> None:
    """Events from an intake that predates `place` keep working (the field is optional)."""
    now = datetime.now(UTC).isoformat()
    c = ComplaintClassified.model_validate(
        {
            "complaint_id": str(uuid4()),
            "reference": "R",
            "project_id": str(uuid4()),
            "channel": "phone",
            "category": "other",
            "grade": "simple",
            "grade_reasons": [],
            "category_reason": "x",
            "received_at": now,
            "recorded_at": now,
        }
    )
    assert c.place is None
