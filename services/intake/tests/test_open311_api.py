"""Open311 GeoReport v2 against the real app and database (in process, over ASGI)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import orjson
import pytest

from intake.domain.vocabulary import Category
from propdesk.service.resources import ServiceResources

from .conftest import Company, admin_fetch, make_key

BASE = "/open311/v2"


def _key(headers: dict[str, str]) -> str:
    return headers["X-API-Key"]


@pytest.fixture(scope="module")
async def sunrise_key(resources: ServiceResources, company_a: Company) -> str:
    return _key(await make_key(resources, company_a, projects=["SUNRISE"]))


@pytest.fixture(scope="module")
async def all_projects_key(resources: ServiceResources, company_a: Company) -> str:
    return _key(await make_key(resources, company_a))


@pytest.fixture(scope="module")
async def other_company_key(resources: ServiceResources, company_b: Company) -> str:
    return _key(await make_key(resources, company_b, projects=["SUNRISE"]))


def tag() -> str:
    """A token that keeps one test's complaints from matching another's."""
    return uuid4().hex[:8]


async def post(client: httpx.AsyncClient, fmt: str = "json", **form: str) -> httpx.Response:
    return await client.post(f"{BASE}/requests.{fmt}", data=form)


class TestServices:
    async def test_service_list_json(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        r = await client.get(f"{BASE}/services.json", params={"api_key": sunrise_key})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        codes = [s["service_code"] for s in r.json()]
        assert codes == [c.value for c in Category]
        assert all(s["type"] == "realtime" and s["metadata"] is True for s in r.json())

    async def test_service_list_xml_with_jurisdiction(
        self, client: httpx.AsyncClient, all_projects_key: str
    ) -> None:
        r = await client.get(
            f"{BASE}/services.xml", params={"api_key": all_projects_key, "jurisdiction_id": "MOON"}
        )
        assert r.status_code == 200, r.text
        root = ET.fromstring(r.content)
        assert root.tag == "services"
        assert len(root.findall("service")) == len(Category)

    async def test_service_definition(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        r = await client.get(f"{BASE}/services/noise.xml", params={"api_key": sunrise_key})
        assert r.status_code == 200, r.text
        root = ET.fromstring(r.content)
        assert root.tag == "service_definition"
        assert root.findtext("service_code") == "noise"
        codes = [a.findtext("code") for a in root.findall("attributes/attribute")]
        assert "ticket_id" in codes and "channel" in codes

    async def test_unknown_service(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        r = await client.get(f"{BASE}/services/plumbing.json", params={"api_key": sunrise_key})
        assert r.status_code == 404
        assert r.json() == [{"code": 404, "description": "service_code: 'plumbing' not found"}]

    async def test_no_key_invalid_key_bad_format(self, client: httpx.AsyncClient) -> None:
        r = await client.get(f"{BASE}/services.json")
        assert r.status_code == 403  # the spec: "403 - Missing or Invalid API Key"
        assert r.json()[0]["description"] == "api_key: required"
        r = await client.get(f"{BASE}/services.xml", params={"api_key": "pdk_nope_nope"})
        assert r.status_code == 403
        assert ET.fromstring(r.content).findtext("error/description") == "api_key: invalid"
        r = await client.get(f"{BASE}/services.yaml")
        assert r.status_code == 404
        assert "format" in r.json()[0]["description"]

    async def test_unknown_jurisdiction(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        # The key sees SUNRISE only: MOON is as unknown as a made-up code.
        for code in ("MOON", "NOWHERE"):
            r = await client.get(
                f"{BASE}/services.json", params={"api_key": sunrise_key, "jurisdiction_id": code}
            )
            assert r.status_code == 404, r.text
            assert r.json()[0]["description"].startswith("jurisdiction_id:")


class TestPostRequest:
    async def test_form_post_records_a_complaint(
        self,
        client: httpx.AsyncClient,
        sunrise_key: str,
        resources: ServiceResources,
        company_a: Company,
    ) -> None:
        t = tag()
        r = await post(
            client,
            api_key=sunrise_key,
            jurisdiction_id="SUNRISE",
            service_code="facility_repair",
            description=f"1号楼大堂天花板漏水 {t}",
            lat="31.2304",
            long="121.4737",
            address_string=f"1号楼大堂 {t}",
            first_name="敏",
            last_name="王",
            phone="13800138000",
            email="wang.min@example.com",
            device_id="cc-desk-12",
            account_id="acct-1",
            media_url="https://cc.example/p/1.jpg",
            **{"attribute[ticket_id]": f"CC-{t}", "attribute[demand]": "尽快维修"},
        )
        assert r.status_code == 201, r.text
        [answer] = r.json()
        assert set(answer) == {"service_request_id", "service_notice", "account_id"}
        assert answer["account_id"] == "acct-1"
        assert "SUNRISE-" in answer["service_notice"]
        request_id = answer["service_request_id"]

        [row] = await admin_fetch(
            resources.settings,
            "SELECT channel, category, category_source, external_reference, complainant_name, "
            "place, demand, tenant_id, attachments, lat, long, complainant_email, device_id"
            " FROM intake.complaints WHERE id = $1::uuid",
            request_id,
        )
        assert row["channel"] == "call_center"
        assert row["category"] == "facility_repair" and row["category_source"] == "caller"
        assert row["external_reference"] == f"CC-{t}"
        assert row["complainant_name"] == "王敏"
        assert row["place"] == f"1号楼大堂 {t}"
        assert (row["lat"], row["long"]) == (31.2304, 121.4737)
        assert row["complainant_email"] == "wang.min@example.com"
        assert row["device_id"] == "cc-desk-12"
        assert row["demand"] == "尽快维修"
        assert row["tenant_id"] == company_a.tenant_id

        r = await client.get(f"{BASE}/requests/{request_id}.json", params={"api_key": sunrise_key})
        assert r.status_code == 200, r.text
        [sr] = r.json()
        assert sr["service_request_id"] == request_id
        assert sr["status"] == "open"
        assert sr["service_code"] == "facility_repair"
        assert (sr["lat"], sr["long"], sr["address"]) == (31.2304, 121.4737, f"1号楼大堂 {t}")
        assert sr["media_url"] == "https://cc.example/p/1.jpg"
        assert sr["agency_responsible"] == "阳光花园"
        requested = datetime.fromisoformat(sr["requested_datetime"])
        assert requested.tzinfo is not None
        assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)

        # The ticket id is a token; a retry with the same ticket and fields is a replay.
        r = await client.get(f"{BASE}/tokens/CC-{t}.xml", params={"api_key": sunrise_key})
        assert r.status_code == 200, r.text
        root = ET.fromstring(r.content)
        assert root.findtext("request/service_request_id") == request_id
        assert root.findtext("request/token") == f"CC-{t}"

    async def test_retry_with_same_ticket_is_idempotent(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        t = tag()
        form = {
            "api_key": sunrise_key,
            "service_code": "parking",
            "description": f"车位被占 {t}",
            "attribute[ticket_id]": f"CC-{t}",
        }
        first = await post(client, **form)
        again = await post(client, **form)
        assert first.status_code == again.status_code == 201, again.text
        assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        changed = await post(client, **{**form, "description": f"别的事 {t}"})
        assert changed.status_code == 409, changed.text
        assert changed.json()[0]["description"].startswith("attribute[ticket_id]:")

    async def test_repeat_call_answers_with_the_open_case(
        self, client: httpx.AsyncClient, sunrise_key: str, resources: ServiceResources
    ) -> None:
        t = tag()
        form = {
            "api_key": sunrise_key,
            "service_code": "parking",
            "description": f"车位被外来车辆占用 {t}",
            "address_string": f"地下车库B2-{t}",
            "phone": f"135{uuid4().int % 10**8:08d}",
            "attribute[ticket_id]": f"CC1-{t}",
        }
        first = await post(client, **form)
        assert first.status_code == 201, first.text
        case_id = first.json()[0]["service_request_id"]
        again = await post(
            client,
            **{**form, "description": f"车位还被占着 {t}", "attribute[ticket_id]": f"CC2-{t}"},
        )
        # Nothing new: 200 with the open case's id, and the notice says it was joined.
        assert again.status_code == 200, again.text
        [answer] = again.json()
        assert answer["service_request_id"] == case_id
        assert "与已有投诉合并处理" in answer["service_notice"]
        assert "业主来电 2 次" in answer["service_notice"]
        got = await client.get(f"{BASE}/requests/{case_id}.json", params={"api_key": sunrise_key})
        assert "calls=2" in got.json()[0]["status_notes"]
        # The repeat's ticket id names the case, also once its idempotency key is gone.
        await admin_fetch(
            resources.settings,
            "DELETE FROM intake.idempotency_keys WHERE key = $1",
            f"open311:CC2-{t}",
        )
        token = await client.get(f"{BASE}/tokens/CC2-{t}.json", params={"api_key": sunrise_key})
        assert token.status_code == 200, token.text
        assert token.json()[0]["service_request_id"] == case_id

    async def test_json_body_header_key_xml_answer(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        t = tag()
        r = await client.post(
            f"{BASE}/requests.xml",
            headers={"X-API-Key": sunrise_key},
            content=orjson.dumps(
                {
                    "service_code": "noise",
                    "description": f"Loud music every night {t}",
                    "attribute": {"channel": "government", "building": "1", "room": "102"},
                }
            ),
            # httpx sets no content type for raw content
        )
        assert r.status_code == 400, r.text  # no content type: refused, named
        r = await client.post(
            f"{BASE}/requests.xml",
            headers={"X-API-Key": sunrise_key, "Content-Type": "application/json"},
            content=orjson.dumps(
                {
                    "service_code": "noise",
                    "description": f"Loud music every night {t}",
                    "attribute": {"channel": "government", "building": "1", "room": "102"},
                }
            ),
        )
        assert r.status_code == 201, r.text
        root = ET.fromstring(r.content)
        assert root.tag == "service_requests"
        request_id = root.findtext("request/service_request_id")
        r = await client.get(f"{BASE}/requests/{request_id}.json", params={"api_key": sunrise_key})
        [sr] = r.json()
        # Forwarded by government: complex (DOMAIN.md).
        assert "grade=complex" in sr["status_notes"]
        assert sr["address_id"] is not None  # the unit 1-102 was resolved

    @pytest.mark.parametrize(
        ("form", "status", "needle"),
        [
            ({"service_code": "noise"}, 400, "description: is required"),
            ({"description": "x"}, 400, "service_code: is required"),
            ({"service_code": "plumbing", "description": "x"}, 404, "service_code:"),
            (
                {"service_code": "noise", "description": "x", "address_id": str(uuid4())},
                400,
                "address_id: no such unit",
            ),
            (
                {
                    "service_code": "noise",
                    "description": "x",
                    "attribute[received_at]": "2020-01-01T00:00:00+08:00",
                },
                400,
                "attribute[received_at]: must not be more than 168 hour(s) in the past",
            ),
            (
                {"service_code": "noise", "description": "x", "phone": "call me maybe"},
                400,
                "phone:",
            ),
        ],
    )
    async def test_bad_requests_name_the_field(
        self,
        client: httpx.AsyncClient,
        sunrise_key: str,
        form: dict[str, str],
        status: int,
        needle: str,
    ) -> None:
        r = await post(client, api_key=sunrise_key, **form)
        assert r.status_code == status, r.text
        assert any(needle in e["description"] for e in r.json()), r.json()
        x = await post(client, "xml", api_key=sunrise_key, **form)
        assert x.status_code == status
        root = ET.fromstring(x.content)
        assert root.tag == "errors"
        assert any(needle in (e.findtext("description") or "") for e in root.findall("error"))

    async def test_jurisdiction_needed_when_key_sees_several_projects(
        self, client: httpx.AsyncClient, all_projects_key: str
    ) -> None:
        form = {"api_key": all_projects_key, "service_code": "noise", "description": tag()}
        r = await post(client, **form)
        assert r.status_code == 400
        assert r.json()[0]["description"].startswith("jurisdiction_id: required")
        r = await post(client, **form, jurisdiction_id="MOON")
        assert r.status_code == 201, r.text

    async def test_three_households_make_a_major_group(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        t = tag()
        ids = []
        for room in ("501", "502", "503"):
            r = await post(
                client,
                api_key=sunrise_key,
                service_code="facility_repair",
                description=f"5号楼电梯困人 {t}",
                **{"attribute[building]": "5", "attribute[room]": room},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()[0]["service_request_id"])
        r = await client.get(
            f"{BASE}/requests.json",
            params={"api_key": sunrise_key, "service_request_id": ",".join(ids)},
        )
        assert r.status_code == 200
        by_id = {sr["service_request_id"]: sr for sr in r.json()}
        assert set(by_id) == set(ids)
        assert all("grade=major" in sr["status_notes"] for sr in by_id.values()), by_id
        assert all("group_case_id=" in sr["status_notes"] for sr in by_id.values())
        assert "群体投诉" in by_id[ids[2]]["service_notice"]


class TestQueries:
    async def test_filters_and_isolation(
        self, client: httpx.AsyncClient, sunrise_key: str, other_company_key: str
    ) -> None:
        t = tag()
        r = await post(
            client, api_key=sunrise_key, service_code="landscaping", description=f"草坪枯死 {t}"
        )
        assert r.status_code == 201, r.text
        request_id = r.json()[0]["service_request_id"]

        async def listed(**params: str) -> set[str]:
            r = await client.get(f"{BASE}/requests.json", params={"api_key": sunrise_key, **params})
            assert r.status_code == 200, r.text
            return {sr["service_request_id"] for sr in r.json()}

        assert request_id in await listed(service_code="landscaping")
        assert request_id in await listed(service_code="landscaping", status="open")
        assert request_id not in await listed(service_code="landscaping", status="closed")
        assert request_id not in await listed(service_code="noise")
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        assert request_id not in await listed(end_date=yesterday)

        r = await client.get(
            f"{BASE}/requests.xml", params={"api_key": sunrise_key, "service_code": "landscaping"}
        )
        root = ET.fromstring(r.content)
        assert root.tag == "service_requests"
        assert request_id in [e.findtext("service_request_id") for e in root.findall("request")]

        # Another company sees nothing of it, by id, by list or by token.
        r = await client.get(
            f"{BASE}/requests/{request_id}.json", params={"api_key": other_company_key}
        )
        assert r.status_code == 404
        r = await client.get(
            f"{BASE}/requests.json",
            params={"api_key": other_company_key, "service_request_id": request_id},
        )
        assert r.status_code == 200 and r.json() == []

    async def test_bad_query(self, client: httpx.AsyncClient, sunrise_key: str) -> None:
        r = await client.get(
            f"{BASE}/requests.xml", params={"api_key": sunrise_key, "status": "pending"}
        )
        assert r.status_code == 400
        assert "status:" in (ET.fromstring(r.content).findtext("error/description") or "")

    async def test_unknown_request_and_token(
        self, client: httpx.AsyncClient, sunrise_key: str
    ) -> None:
        r = await client.get(f"{BASE}/requests/{uuid4()}.json", params={"api_key": sunrise_key})
        assert r.status_code == 404
        r = await client.get(f"{BASE}/tokens/never-sent.json", params={"api_key": sunrise_key})
        assert r.status_code == 404
        assert r.json()[0]["description"] == "token: 'never-sent' not found"


async def test_service_request_updates_feed(client: httpx.AsyncClient, sunrise_key: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    r = await post(
        client, api_key=sunrise_key, service_code="fees", description=f"物业费多收 {tag()}"
    )
    assert r.status_code == 201, r.text
    request_id = r.json()[0]["service_request_id"]
    r = await client.get(
        f"{BASE}/servicerequestupdates.xml",
        params={"api_key": sunrise_key, "start_date": before.isoformat()},
    )
    assert r.status_code == 200, r.text
    root = ET.fromstring(r.content)
    assert root.tag == "service_request_updates"
    mine = [
        u for u in root.findall("request_update") if u.findtext("service_request_id") == request_id
    ]
    kinds = [u.findtext("external_status_code") for u in mine]
    assert kinds[:2] == ["complaint.received", "complaint.classified"]
    assert all(u.findtext("status") == "open" for u in mine)


async def test_openapi_documents_open311_errors_and_problems_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    """Open311 operations document the spec's error list, which they send (a real one is
    checked against it); the native API documents problem+json; FastAPI's own validation
    error shape, which neither sends, is nowhere."""
    doc = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in orjson.dumps(doc).decode()
    for path, item in doc["paths"].items():
        for op in item.values():
            errors = op["responses"]["4XX"]["content"]
            if path.startswith(BASE):
                assert set(errors) == {"application/json", "text/xml"}, path
                assert "422" not in op["responses"], path
                answered = op["responses"]["201" if "201" in op["responses"] else "200"]
                assert set(answered["content"]) == {"application/json", "text/xml"}, path
            else:
                assert set(errors) == {"application/problem+json"}, path
    listed = doc["paths"][f"{BASE}/requests.{{fmt}}"]["post"]["responses"]["4XX"]
    item = listed["content"]["application/json"]["schema"]["items"]
    r = await client.get(f"{BASE}/services.json")  # no api_key
    assert r.status_code == 403
    for error in r.json():
        assert set(error) == set(item["required"]) == set(item["properties"])
        assert isinstance(error["code"], int) and isinstance(error["description"], str)
