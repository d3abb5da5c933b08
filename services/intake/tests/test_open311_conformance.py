"""Open311 GeoReport v2 conformance: what the published spec (wiki.open311.org/GeoReport_v2)
and mySociety's servicerequestupdates extension say, point by point. Pure tests first, then
the same points against the real app and database."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest

from intake.open311.rendering import Format
from intake.open311.service_requests import parse_request_query, request_update
from intake.open311.submission import flatten, parse_submission
from propdesk.service.resources import ServiceResources

from .conftest import Company, make_key

BASE = "/open311/v2"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def tag() -> str:
    return uuid4().hex[:8]


class TestPure:
    def test_service_request_id_overrides_all_other_arguments(self) -> None:
        """Spec, GET Service Requests, service_request_id: "This overrides all other
        arguments." Other arguments, even malformed ones, neither filter nor refuse."""
        a = uuid4()
        q = parse_request_query(
            {
                "service_request_id": str(a),
                "status": "pending",
                "service_code": "plumbing",
                "start_date": "last week",
                "end_date": "2026-01-01T00:00:00",
            },
            NOW,
        )
        assert q.by_id and q.ids == (a,)
        assert q.statuses == () and q.service_codes == ()

    def test_json_content_type_is_utf8(self) -> None:
        """Spec, Format Support: "JSON: Content-Type: application/json; charset=utf-8"."""
        assert Format.JSON.media_type == "application/json; charset=utf-8"
        assert Format.XML.media_type == "text/xml; charset=utf-8"

    def test_null_or_empty_attribute_is_not_declared(self) -> None:
        """Spec, Optional Arguments: "A null parameter should be treated as equivalent to a
        non-declared parameter"; so is an empty one ("the response should be the same")."""
        base = {"service_code": "noise", "description": "太吵"}
        declared = parse_submission(flatten(base.items())).complaint
        for attribute in ({"demand": None}, {"demand": ""}, {"colour": ""}, {"colour": None}):
            sub = parse_submission(flatten([*base.items(), ("attribute", attribute)]))
            assert sub.complaint == declared, attribute
        form = parse_submission(flatten([*base.items(), ("attribute[colour]", "")]))
        assert form.complaint == declared

    @pytest.mark.parametrize(
        ("kind", "status_after", "expected"),
        [
            ("work_order.dispatched", "dispatched", "open"),
            ("work_order.resolved", "resolved", "closed"),
            ("work_order.signed_off", "signed_off", "closed"),
            ("work_order.feedback_given", "feedback_given", "closed"),
            ("work_order.closed", "closed", "closed"),
            ("work_order.reopened", "reopened", "open"),
            # A late step moves nothing: the status after it is the case's, closed here.
            ("work_order.progressed", "closed", "closed"),
            ("complaint.invalidation_approved", None, "closed"),
            ("complaint.received", None, "open"),
        ],
    )
    def test_update_status_is_the_requests_status_after_it(
        self, kind: str, status_after: str | None, expected: str
    ) -> None:
        """mySociety, request_update status: "The status of the service request after the
        update", the same open/closed as GET requests says (closed from resolution on)."""
        row = {
            "id": 1,
            "complaint_id": uuid4(),
            "type": kind,
            "reason": None,
            "at": NOW,
            "data": {"status_after": status_after} if status_after else {},
        }
        assert request_update(row)["status"] == expected


@pytest.fixture(scope="module")
async def sunrise_key(resources: ServiceResources, company_a: Company) -> str:
    return (await make_key(resources, company_a, projects=["SUNRISE"]))["X-API-Key"]


async def _post(client: httpx.AsyncClient, **form: str) -> str:
    r = await client.post(f"{BASE}/requests.json", data=form)
    assert r.status_code == 201, r.text
    return r.json()[0]["service_request_id"]


class TestApi:
    @pytest.mark.parametrize("fmt", ["json", "xml"])
    async def test_missing_or_wrong_credential_is_403(
        self, client: httpx.AsyncClient, fmt: str
    ) -> None:
        """Spec, Errors: "403 - Missing or Invalid API Key"; "The HTTP error codes should
        always be ... 403 for errors because of wrong or missing api_key"."""
        cases = [
            ("GET", "services", {}, "api_key: required"),
            ("GET", "requests", {}, "api_key: required"),
            ("POST", "requests", {}, "api_key: required"),
            ("GET", "services", {"Authorization": "Bearer not-a-token"}, "Authorization:"),
        ]
        for method, path, headers, needle in cases:
            r = await client.request(method, f"{BASE}/{path}.{fmt}", headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            if fmt == "json":
                errors = [(e["code"], e["description"]) for e in r.json()]
            else:
                root = ET.fromstring(r.content)
                assert root.tag == "errors"
                errors = [
                    (int(e.findtext("code") or 0), e.findtext("description") or "")
                    for e in root.findall("error")
                ]
            assert errors and all(code == 403 for code, _ in errors), errors
            assert any(d.startswith(needle) for _, d in errors), errors

    async def test_a_credential_header_sent_twice_is_403_naming_it(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        """Two keys (or two tokens) name no one caller: refused as the native API refuses
        them, in Open311's 403, with the header at fault."""
        for name, value in (("X-API-Key", sunrise_key), ("Authorization", "Bearer x")):
            r = await client.get(f"{BASE}/services.json", headers=[(name, value), (name, value)])
            assert r.status_code == 403, r.text
            assert [e["description"] for e in r.json()] == [
                f"{name}: Send one credential: this request has 2 {name} headers."
            ]

    async def test_service_request_id_overrides_all_other_arguments(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        request_id = await _post(
            client, api_key=sunrise_key, service_code="landscaping", description=f"树倒了 {tag()}"
        )
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        r = await client.get(
            f"{BASE}/requests.json",
            params={
                "api_key": sunrise_key,
                "service_request_id": request_id,
                "service_code": "noise",
                "status": "closed,pending",
                "end_date": yesterday,
            },
        )
        assert r.status_code == 200, r.text
        assert [sr["service_request_id"] for sr in r.json()] == [request_id]

    async def test_filters_may_be_declared_multiple_times(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        """Spec, service_code and status: "can be declared multiple times, comma
        delimited": repeated parameters add up, as the comma-separated list does."""
        t = tag()
        lawn = await _post(
            client, api_key=sunrise_key, service_code="landscaping", description=f"草坪 {t}"
        )
        car = await _post(
            client, api_key=sunrise_key, service_code="parking", description=f"车 {t}"
        )

        async def listed(params: list[tuple[str, str]]) -> set[str]:
            r = await client.get(
                f"{BASE}/requests.json", params=[("api_key", sunrise_key), *params]
            )
            assert r.status_code == 200, r.text
            return {sr["service_request_id"] for sr in r.json()}

        both = {lawn, car}
        assert both <= await listed([("service_code", "landscaping,parking")])
        assert both <= await listed([("service_code", "landscaping"), ("service_code", "parking")])
        repeated = [("status", "closed"), ("status", "open"), ("service_code", "parking")]
        assert car in await listed(repeated)

    async def test_json_answers_say_utf8(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        r = await client.get(f"{BASE}/services.json", params={"api_key": sunrise_key})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        r = await client.get(f"{BASE}/services/plumbing.json", params={"api_key": sunrise_key})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        r = await client.get(f"{BASE}/nothing.json", params={"api_key": sunrise_key})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json; charset=utf-8"


async def _update_statuses(
    client: httpx.AsyncClient, api_key: str, since: datetime
) -> dict[str, dict[str, str]]:
    """The updates feed since `since`: request id → update type → status after it."""
    r = await client.get(
        f"{BASE}/servicerequestupdates.json",
        params={"api_key": api_key, "start_date": since.isoformat()},
    )
    assert r.status_code == 200, r.text
    out: dict[str, dict[str, str]] = {}
    for u in r.json():
        out.setdefault(u["service_request_id"], {})[u["external_status_code"]] = u["status"]
    return out


async def test_update_after_a_closed_case_says_closed(
    client: httpx.AsyncClient, company_a: Company, sunrise_key: str
) -> None:
    """mySociety: a request_update's status is "the status of the service request after
    the update". A staff change that leaves the status as it is (a flag, an override) on a
    closed case is a closed update, not a reopening."""
    from propdesk.testing.admin_reads import admin_fetch

    before = datetime.now(UTC) - timedelta(seconds=5)
    request_id = await _post(
        client, api_key=sunrise_key, service_code="fees", description=f"物业费多收 {tag()}"
    )
    closed = await admin_fetch(
        company_a.settings,
        "UPDATE intake.complaints SET status = 'closed' WHERE id = $1 RETURNING id",
        UUID(request_id),
    )
    assert len(closed) == 1
    sup = company_a.token("cs_supervisor", subject="sup-feed")
    r = await client.post(
        f"/v1/complaints/{request_id}/flags",
        json={"flag": "malicious", "reason": "反复骚扰"},
        headers=sup,
    )
    assert r.status_code == 201, r.text
    mine = (await _update_statuses(client, sunrise_key, before))[request_id]
    assert mine["complaint.received"] == "open"
    assert mine["complaint.flagged"] == "closed", mine


async def test_a_closed_member_raised_by_a_group_stays_closed_in_the_feed(
    client: httpx.AsyncClient, company_a: Company, sunrise_key: str
) -> None:
    """A third household makes a group: the earlier cases are regraded and linked, which
    leaves their status as it is. A member already closed is still closed after those
    updates; the feed said "open" for them before their rows recorded `status_after`."""
    from propdesk.testing.admin_reads import admin_fetch

    before = datetime.now(UTC) - timedelta(seconds=5)
    clerk = company_a.token("intake_clerk", subject="clerk-group-feed")
    marker = tag()
    ids = []
    for n in (1, 2, 3):
        r = await client.post(
            "/v1/complaints",
            json={
                "project": "SUNRISE",
                "channel": "phone",
                "category": "landscaping",
                "content": f"{marker} 中心花园的大树倒了压坏围栏",
                "place": "中心花园",
                "complainant": {"name": "业主", "phone": f"1391234{n:04d}"},
            },
            headers=clerk,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        if n == 1:
            closed = await admin_fetch(
                company_a.settings,
                "UPDATE intake.complaints SET status = 'closed' WHERE id = $1 RETURNING id",
                UUID(ids[0]),
            )
            assert len(closed) == 1
    assert r.json()["case"]["kind"] == "group", r.json()
    statuses = await _update_statuses(client, sunrise_key, before)
    first, second = statuses[ids[0]], statuses[ids[1]]
    assert first == {
        "complaint.received": "open",
        "complaint.classified": "open",
        "complaint.regraded": "closed",
        "complaint.grouped": "closed",
    }, first
    assert second["complaint.regraded"] == second["complaint.grouped"] == "open", second
