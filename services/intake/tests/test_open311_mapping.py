"""Pure tests of the Open311 mapping and rendering (no server)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import orjson
import pytest

from intake.api.schemas import ComplaintIn
from intake.domain.rules import DEFAULT_RULES, TenantRules
from intake.domain.vocabulary import Category
from intake.open311 import catalog
from intake.open311.errors import Open311Error, Open311Errors, from_field_errors, open311_field
from intake.open311.rendering import Format, parse_format, render, render_errors
from intake.open311.service_requests import (
    CLOSED_STATUSES,
    native_statuses,
    open311_status,
    parse_request_query,
    service_request,
)
from intake.open311.submission import (
    flatten,
    parse_submission,
    person_name,
    repeated_fields,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def submit(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"service_code": "facility_repair", "description": "电梯坏了"}
    base.update(fields)
    return parse_submission(flatten(base.items())).complaint


def test_repeated_fields_but_a_multi_valued_attribute() -> None:
    items = [
        ("description", "a"),
        ("attribute[colours][]", "red"),
        ("attribute[colours][]", "blue"),
        ("attribute[floor]", "1"),
        ("attribute[floor]", "2"),
        ("description", "b"),
        ("description", "c"),
        ("service_code", "noise"),
    ]
    assert repeated_fields(items) == ["attribute[floor]", "description"]
    assert repeated_fields(items[:4]) == []


class TestCatalog:
    def test_one_service_per_category(self) -> None:
        services = catalog.service_list(DEFAULT_RULES)
        assert [s["service_code"] for s in services] == [c.value for c in Category]
        noise = next(s for s in services if s["service_code"] == "noise")
        assert noise["type"] == "realtime"
        assert noise["metadata"] is True
        assert "噪音" in noise["service_name"]
        assert "噪音" in noise["keywords"].split(",")

    def test_keywords_follow_tenant_rules(self) -> None:
        rules = TenantRules.from_overrides({"category_keywords": {"noise": ["广场舞"]}})
        noise = catalog.service_entry(Category.NOISE, rules)
        assert noise["keywords"] == "广场舞"

    def test_definition_attributes_follow_the_spec(self) -> None:
        definition = catalog.service_definition(Category.PARKING)
        assert definition["service_code"] == "parking"
        attrs = definition["attributes"]
        assert [a["order"] for a in attrs] == list(range(1, len(attrs) + 1))
        for a in attrs:
            assert set(a) == {
                "variable", "code", "datatype", "required", "datatype_description",
                "order", "description", "values",
            }  # fmt: skip
            assert a["datatype"] in {
                "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist",
            }  # fmt: skip
        channel = next(a for a in attrs if a["code"] == "channel")
        assert {"key": "call_center", "name": "呼叫中心 (call_center)"} in channel["values"]

    def test_unknown_service_code(self) -> None:
        assert catalog.category_of("plumbing") is None
        assert catalog.category_of("noise") is Category.NOISE


class TestSubmission:
    def test_full_form_maps_to_a_valid_complaint(self) -> None:
        unit = uuid4()
        sub = parse_submission(
            flatten(
                [
                    ("api_key", "k"),
                    ("jurisdiction_id", "SUNRISE"),
                    ("service_code", "noise"),
                    ("description", "楼上半夜装修太吵"),
                    ("address_id", str(unit)),
                    ("address_string", "1号楼 101"),
                    ("lat", "31.2304"),
                    ("long", "121.4737"),
                    ("first_name", "敏"),
                    ("last_name", "王"),
                    ("phone", "+86 138 0013 8000"),
                    ("email", "w@example.com"),
                    ("account_id", "acct-9"),
                    ("device_id", "kiosk-7"),
                    ("media_url", "https://cc.example/p/1.jpg"),
                    ("attribute[ticket_id]", "CC-2026-1"),
                    ("attribute[demand]", "要求立即制止"),
                    ("attribute[received_at]", "2026-11-26T09:30:00+08:00"),
                    ("attribute[channel]", "government"),
                ]
            )
        )
        assert sub.jurisdiction_id == "SUNRISE"
        assert sub.account_id == "acct-9"
        assert sub.idempotency_seed == "CC-2026-1"
        c = sub.complaint
        assert c["category"] == "noise"
        assert c["channel"] == "government"
        assert c["content"] == "楼上半夜装修太吵"
        assert c["complainant"] == {
            "name": "王敏",
            "phone": "+86 138 0013 8000",
            "email": "w@example.com",
        }
        assert c["unit"] == {"id": str(unit)}
        assert c["place"] == "1号楼 101"
        assert (c["lat"], c["long"]) == (31.2304, 121.4737)
        assert c["device_id"] == "kiosk-7"
        assert "second_complaint" not in c and "forwarded_result" not in c
        assert c["attachments"] == [{"url": "https://cc.example/p/1.jpg", "kind": "photo"}]
        assert c["external_reference"] == "CC-2026-1"
        assert c["demand"] == "要求立即制止"
        assert c["received_at"] == "2026-11-26T09:30:00+08:00"
        # The native schema accepts it as is.
        ComplaintIn.model_validate({**c, "project": "SUNRISE"})

    def test_defaults(self) -> None:
        c = submit()
        assert c["channel"] == "call_center"
        assert "unit" not in c and "place" not in c and "external_reference" not in c

    def test_json_attribute_object_and_building_room(self) -> None:
        c = submit(attribute={"building": "5", "room": "501", "ticket_id": 42})
        assert c["unit"] == {"building": "5", "room": "501"}
        assert c["external_reference"] == "42"

    def test_caller_service_request_id_is_the_reference_fallback(self) -> None:
        assert submit(service_request_id="X-1")["external_reference"] == "X-1"

    def test_lat_long_only(self) -> None:
        c = submit(lat="30.5", long="114.25")
        assert (c["lat"], c["long"]) == (30.5, 114.25) and "place" not in c

    def test_second_complaint_and_forwarded_result(self) -> None:
        c = submit(
            **{
                "attribute[second_complaint]": "true",
                "attribute[previous_case]": "SUNRISE-20261120-0003",
                "attribute[forwarded_result]": "dissatisfied",
                "attribute[channel]": "quality_dept",
            }
        )
        assert c["second_complaint"] is True
        assert c["previous_case"] == "SUNRISE-20261120-0003"
        assert c["forwarded_result"] == "dissatisfied"
        ComplaintIn.model_validate({**c, "project": "SUNRISE"})
        assert "second_complaint" not in submit(**{"attribute[second_complaint]": "false"})

    def test_a_json_submission_gives_a_yes_no_attribute_as_a_json_boolean(self) -> None:
        assert submit(attribute={"second_complaint": True})["second_complaint"] is True
        assert "second_complaint" not in submit(attribute={"second_complaint": False})
        # Only there: a boolean is no text, no time.
        with pytest.raises(Open311Errors, match=r"attribute\[building\]: must be a string"):
            submit(attribute={"building": True})

    @pytest.mark.parametrize(
        ("fields", "code", "needle"),
        [
            ({"service_code": None}, 400, "service_code: is required"),
            ({"service_code": "plumbing"}, 404, "service_code: 'plumbing' not found"),
            ({"description": "  "}, 400, "description: is required"),
            ({"lat": "91", "long": "0"}, 400, "lat: must be between"),
            ({"lat": "x", "long": "0"}, 400, "lat: must be a decimal"),
            ({"lat": "30"}, 400, "lat/long: give both"),
            ({"long": "nan", "lat": "1"}, 400, "long: must be between"),
            ({"address_id": "1-101"}, 400, "address_id: must be a unit id"),
            ({"attribute[room]": "501"}, 400, "attribute[building]/attribute[room]"),
            ({"attribute[colour]": "red"}, 400, "attribute[colour]: not an attribute"),
            ({"attribute[channel]": "pigeon"}, 400, "attribute[channel]: unknown channel"),
            ({"attribute[received_at]": "yesterday"}, 400, "attribute[received_at]: must be"),
            (
                {"attribute[received_at]": "2026-11-26T09:30:00"},
                400,
                "attribute[received_at]: must include a UTC offset",
            ),
            ({"address_string": "x" * 300}, 400, "address_string: at most"),
            (
                {"attribute[second_complaint]": "maybe"},
                400,
                "attribute[second_complaint]: must be true or false",
            ),
            (
                {"attribute[forwarded_result]": "dissatisfied", "attribute[channel]": "phone"},
                400,
                "attribute[forwarded_result]: only with a forwarding attribute[channel]",
            ),
            (
                {"attribute[forwarded_result]": "satisfied", "attribute[channel]": "group"},
                400,
                "attribute[forwarded_result]: must be dissatisfied",
            ),
            ({"description": ["a", "b"]}, 400, "description: must be a string"),
        ],
    )
    def test_bad_input_names_the_field(
        self, fields: dict[str, object], code: int, needle: str
    ) -> None:
        data: dict[str, object] = {"service_code": "facility_repair", "description": "电梯坏了"}
        for k, v in fields.items():
            if v is None:
                data.pop(k)
            else:
                data[k] = v
        with pytest.raises(Open311Errors) as info:
            parse_submission(flatten(data.items()))
        assert any(e.code == code and needle in e.description for e in info.value.errors), (
            info.value.errors
        )

    def test_all_errors_reported_together_and_400_wins(self) -> None:
        with pytest.raises(Open311Errors) as info:
            parse_submission({"service_code": "plumbing", "lat": "999"})
        assert info.value.status == 400
        assert len(info.value.errors) >= 3
        with pytest.raises(Open311Errors) as info:
            parse_submission({"service_code": "plumbing", "description": "x"})
        assert info.value.status == 404

    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [("敏", "王", "王敏"), ("Ann", "Lee", "Ann Lee"), ("Ann", None, "Ann"), (None, None, None)],
    )
    def test_person_name(self, first: str | None, last: str | None, expected: str | None) -> None:
        assert person_name(first, last) == expected


class TestErrors:
    @pytest.mark.parametrize(
        ("native", "open311"),
        [
            ("body.content", "description"),
            ("body.unit.id", "address_id"),
            ("body.received_at", "attribute[received_at]"),
            ("body.complainant.phone", "phone"),
            ("body.attachments.0.url", "media_url"),
            ("body.project", "jurisdiction_id"),
            ("content", "description"),
            ("body.something_else", "something_else"),
        ],
    )
    def test_native_fields_are_named_as_sent(self, native: str, open311: str) -> None:
        assert open311_field(native) == open311

    def test_problem_becomes_open311(self) -> None:
        exc = from_field_errors(
            422,
            "x",
            [{"field": "body.received_at", "rule": "max_age", "message": "too old"}],
        )
        assert exc.status == 400
        assert exc.errors == [Open311Error(400, "attribute[received_at]: too old")]
        assert from_field_errors(404, "nope", None).errors == [Open311Error(404, "nope")]


class TestRendering:
    def test_formats(self) -> None:
        assert parse_format("JSON") is Format.JSON
        assert parse_format("xml") is Format.XML
        assert parse_format("yaml") is None

    def test_json_list(self) -> None:
        body = render(Format.JSON, "services", "service", catalog.service_list(DEFAULT_RULES))
        data = orjson.loads(body)
        assert isinstance(data, list) and data[0]["service_code"] == "facility_repair"

    def test_xml_services(self) -> None:
        body = render(Format.XML, "services", "service", catalog.service_list(DEFAULT_RULES))
        root = ET.fromstring(body)
        assert root.tag == "services"
        services = root.findall("service")
        assert len(services) == len(Category)
        assert services[0].findtext("service_code") == "facility_repair"
        assert services[0].findtext("metadata") == "true"
        assert "漏水" in (services[0].findtext("keywords") or "")

    def test_xml_service_definition(self) -> None:
        body = render(
            Format.XML, "service_definition", None, catalog.service_definition(Category.NOISE)
        )
        root = ET.fromstring(body)
        assert root.tag == "service_definition"
        assert root.findtext("service_code") == "noise"
        attrs = root.findall("attributes/attribute")
        assert attrs and attrs[0].findtext("variable") == "true"
        values = root.findall("attributes/attribute/values/value")
        assert any(v.findtext("key") == "call_center" for v in values)

    def test_xml_survives_control_characters(self) -> None:
        body = render(Format.XML, "service_requests", "request", [{"description": "a\x0bb\x00"}])
        assert ET.fromstring(body).findtext("request/description") == "a\ufffdb\ufffd"

    def test_errors_both_formats(self) -> None:
        errors = [Open311Error(400, "service_code: is required <&>")]
        assert orjson.loads(render_errors(Format.JSON, errors)) == [
            {"code": 400, "description": "service_code: is required <&>"}
        ]
        root = ET.fromstring(render_errors(Format.XML, errors))
        assert root.tag == "errors"
        assert root.findtext("error/code") == "400"
        assert root.findtext("error/description") == "service_code: is required <&>"


class TestServiceRequests:
    ROW = {
        "id": uuid4(),
        "reference": "SUNRISE-20261126-0001",
        "status": "open",
        "validity": "pending",
        "grade": "complex",
        "category": "noise",
        "content": "楼上太吵",
        "received_at": datetime(2026, 11, 26, 9, 30, tzinfo=UTC),
        "recorded_at": datetime(2026, 11, 26, 9, 31, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 26, 9, 32, tzinfo=UTC),
        "place": "1号楼",
        "lat": 31.2,
        "long": 121.4,
        "unit_id": None,
        "attachments": [{"ref": "x"}, {"url": "https://x/1.jpg"}],
        "calls": 1,
        "group_case_id": uuid4(),
    }

    def test_row_to_request(self) -> None:
        r = service_request(self.ROW, "阳光花园")
        assert r["service_request_id"] == str(self.ROW["id"])
        assert r["status"] == "open"
        assert "validity=pending" in r["status_notes"] and "grade=complex" in r["status_notes"]
        assert r["service_code"] == "noise" and "噪音" in r["service_name"]
        assert r["requested_datetime"] == "2026-11-26T09:30:00+00:00"
        assert r["updated_datetime"] == "2026-11-26T09:32:00+00:00"
        assert (r["address"], r["lat"], r["long"]) == ("1号楼", 31.2, 121.4)
        assert r["media_url"] == "https://x/1.jpg"
        assert r["agency_responsible"] == "阳光花园"
        assert "SUNRISE-20261126-0001" in r["service_notice"]
        assert "群体投诉" in r["service_notice"]

    @pytest.mark.parametrize(
        ("status", "expected"),
        [("open", "open"), ("closed", "closed"), ("resolved", "closed"), ("dispatched", "open")],
    )
    def test_status(self, status: str, expected: str) -> None:
        assert open311_status(status) == expected

    def test_xml_request(self) -> None:
        body = render(Format.XML, "service_requests", "request", [service_request(self.ROW)])
        root = ET.fromstring(body)
        assert root.tag == "service_requests"
        assert root.findtext("request/status") == "open"
        assert root.find("request/expected_datetime") is not None
        assert root.findtext("request/expected_datetime") == ""  # empty element


class TestRequestQuery:
    def test_default_is_last_90_days(self) -> None:
        q = parse_request_query({}, NOW)
        assert (q.start, q.end) == (NOW - timedelta(days=90), NOW)
        assert not q.by_id

    def test_ids_and_references(self) -> None:
        a = uuid4()
        q = parse_request_query({"service_request_id": f"{a}, SUNRISE-20261126-0001,"}, NOW)
        assert q.ids == (a,) and q.references == ("SUNRISE-20261126-0001",) and q.by_id

    def test_filters(self) -> None:
        q = parse_request_query(
            {
                "service_code": "noise,parking",
                "status": "open,closed,open",
                "start_date": "2026-11-01T00:00:00+08:00",
            },
            NOW,
        )
        assert q.service_codes == ("noise", "parking")
        assert q.statuses == ("open", "closed")
        assert q.end - q.start == timedelta(days=90)

    @pytest.mark.parametrize(
        ("params", "needle"),
        [
            ({"status": "pending"}, "status: 'pending'"),
            ({"service_code": "plumbing"}, "service_code: 'plumbing'"),
            ({"start_date": "last week"}, "start_date: must be"),
            ({"end_date": "2026-11-01T00:00:00"}, "end_date: must include a UTC offset"),
            (
                {"start_date": "2026-11-02T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
                "start_date: must not be after end_date",
            ),
            (
                {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
                "at most 90 days",
            ),
            ({"service_request_id": ",".join(["x"] * 101)}, "at most 100 ids"),
        ],
    )
    def test_bad_query(self, params: dict[str, str], needle: str) -> None:
        with pytest.raises(Open311Errors) as info:
            parse_request_query(params, NOW)
        assert any(needle in e.description for e in info.value.errors), info.value.errors
        assert info.value.status == 400

    def test_native_status_filter(self) -> None:
        assert native_statuses(()) == (None, False)
        assert native_statuses(("open", "closed")) == (None, False)
        assert native_statuses(("closed",)) == (set(CLOSED_STATUSES), False)
        assert native_statuses(("open",)) == (set(CLOSED_STATUSES), True)


class TestRequestUpdates:
    def test_timeline_row_to_update(self) -> None:
        from intake.open311.service_requests import request_update

        cid = uuid4()
        row = {
            "id": 7,
            "complaint_id": cid,
            "type": "complaint.invalidation_approved",
            "reason": "与物业无关",
            "at": datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        }
        u = request_update(row)
        assert u["update_id"] == "7" and u["service_request_id"] == str(cid)
        assert u["status"] == "closed"
        assert u["description"].endswith(": 与物业无关")
        assert u["external_status_code"] == "complaint.invalidation_approved"
        assert (
            request_update({**row, "type": "complaint.received", "reason": None})["status"]
            == "open"
        )
        root = ET.fromstring(render(Format.XML, "service_request_updates", "request_update", [u]))
        assert root.findtext("request_update/update_id") == "7"
