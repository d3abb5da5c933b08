"""Bad input, table-driven: each case a precise 4xx problem naming the field, never a 500."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import orjson
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

GOOD = {"project": "SUNRISE", "channel": "phone", "content": "电梯坏了"}


def with_(**over: object) -> dict[str, object]:
    return {**GOOD, **over}


def without(name: str) -> dict[str, object]:
    return {k: v for k, v in GOOD.items() if k != name}


CASES = [
    # (id, raw body or json, status, code, field)
    ("malformed json", b'{"project": "SUNRISE",', 400, "malformed-json", "body"),
    ("not an object", [1, 2], 422, "validation-failed", "body"),
    ("content wrong type", with_(content=123), 422, "validation-failed", "body.content"),
    ("unknown channel", with_(channel="pigeon"), 422, "validation-failed", "body.channel"),
    ("unknown category", with_(category="weather"), 422, "validation-failed", "body.category"),
    ("missing project", without("project"), 422, "validation-failed", "body.project"),
    ("missing content", without("content"), 422, "validation-failed", "body.content"),
    ("unknown project", with_(project="NOWHERE"), 422, "validation-failed", "body.project"),
    ("oversized content", with_(content="投" * 4001), 422, "validation-failed", "body.content"),
    (
        "too many attachments",
        with_(attachments=[{"url": f"https://x/{i}"} for i in range(21)]),
        422,
        "validation-failed",
        "body.attachments",
    ),
    (
        "attachment without url or ref",
        with_(attachments=[{"kind": "photo"}]),
        422,
        "validation-failed",
        "body.attachments.0",
    ),
    ("unknown field", with_(colour="red"), 422, "validation-failed", "body.colour"),
    (
        "received_at in the future",
        with_(received_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
        422,
        "validation-failed",
        "body.received_at",
    ),
    (
        "received_at too old",
        with_(received_at=(datetime.now(UTC) - timedelta(days=8)).isoformat()),
        422,
        "validation-failed",
        "body.received_at",
    ),
    (
        "received_at without offset",
        with_(received_at="2026-11-26T10:00:00"),
        422,
        "validation-failed",
        "body.received_at",
    ),
    ("bad date", with_(received_at="yesterday"), 422, "validation-failed", "body.received_at"),
    (
        "unit without room",
        with_(unit={"building": "1"}),
        422,
        "validation-failed",
        "body.unit",
    ),
    (
        "unknown unit id",
        with_(unit={"id": str(uuid4())}),
        422,
        "validation-failed",
        "body.unit.id",
    ),
    (
        "bad phone",
        with_(complainant={"phone": "call me maybe"}),
        422,
        "validation-failed",
        "body.complainant.phone",
    ),
    # NUL: PostgreSQL stores no U+0000 in text or jsonb; refused field by field.
    ("NUL in content", with_(content="电梯\x00坏了"), 422, "validation-failed", "body.content"),
    (
        "NUL in complainant name",
        with_(complainant={"name": "陈\x00先生"}),
        422,
        "validation-failed",
        "body.complainant.name",
    ),
    (
        "NUL in the unit",
        with_(unit={"building": "1", "room": "2\x0001"}),
        422,
        "validation-failed",
        "body.unit.room",
    ),
    (
        "NUL in an attachment url",
        with_(attachments=[{"url": "https://x/\x00.jpg"}]),
        422,
        "validation-failed",
        "body.attachments.0.url",
    ),
    # occurred_at: within the calendar, not after received_at (plus the received_at clock
    # skew allowance), not decades before it.
    (
        "occurred_at at the end of the calendar",
        with_(occurred_at="9999-12-31T23:59:59-14:00"),
        422,
        "validation-failed",
        "body.occurred_at",
    ),
    (
        "occurred_at at the start of the calendar",
        with_(occurred_at="0001-01-01T00:00:00+14:00"),
        422,
        "validation-failed",
        "body.occurred_at",
    ),
    (
        "occurred_at in 2199",
        with_(occurred_at="2199-01-01T00:00:00+08:00"),
        422,
        "validation-failed",
        "body.occurred_at",
    ),
    (
        "occurred_at after received_at",
        with_(
            received_at=(datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            occurred_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        ),
        422,
        "validation-failed",
        "body.occurred_at",
    ),
]


@pytest.mark.parametrize(
    ("name", "payload", "status", "code", "field"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_complaint_input(client, company_a, name, payload, status, code, field):
    headers = {**company_a.token("intake_clerk"), "Content-Type": "application/json"}
    if isinstance(payload, bytes):
        r = await client.post("/v1/complaints", content=payload, headers=headers)
    else:
        r = await client.post("/v1/complaints", json=payload, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == code
    fields = [e["field"] for e in problem.get("errors", [])]
    assert any(
        f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields
    ), fields


async def test_wrong_tenant_and_no_credentials(client, company_b):
    r = await client.post("/v1/complaints", json=GOOD)
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    other = await client.get(f"/v1/complaints/{uuid4()}", headers=company_b.token("intake_clerk"))
    assert other.status_code == 404


async def test_bad_idempotency_key_and_cursor(client, company_a):
    clerk = company_a.token("intake_clerk")
    r = await client.post(
        "/v1/complaints", json=GOOD, headers={**clerk, "Idempotency-Key": "x" * 300}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header.Idempotency-Key"
    c = await client.get("/v1/complaints", params={"cursor": "!!!"}, headers=clerk)
    assert c.status_code == 422 and c.json()["errors"][0]["field"] == "query.cursor"
    g = await client.get("/v1/complaints", params={"grade": "huge"}, headers=clerk)
    assert g.status_code == 422 and g.json()["errors"][0]["field"] == "query.grade"
    bad_id = await client.get("/v1/complaints/not-a-uuid", headers=clerk)
    assert bad_id.status_code == 422


async def test_idempotency_key_one_header_of_printable_ascii(client, company_a):
    """Two keys on one request (each would make its own complaint), or a key of bytes
    HTTP hands over as latin-1 (UTF-8 `é` arrives as `Ã©`), are refused, not guessed."""
    clerk = company_a.token("intake_clerk")
    two = [*clerk.items(), ("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")]
    r = await client.post("/v1/complaints", json=GOOD, headers=two)
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [
        ("header.Idempotency-Key", "single")
    ]
    for raw in ("é-x".encode(), b"\xff\xfe"):
        r = await client.post(
            "/v1/complaints", json=GOOD, headers=[*clerk.items(), (b"Idempotency-Key", raw)]
        )
        assert r.status_code == 422, (raw, r.text)
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [
            ("header.Idempotency-Key", "format")
        ]


async def test_one_credential_per_request(client, company_a, company_b, new_key):
    """Two tokens, or two keys, name two callers: refused, not the first taken (two
    companies' tokens listed the first one's complaints). A token and a key together are
    read in order, the token first (`libs/tests/test_auth.py`)."""
    a = company_a.token("intake_clerk")["Authorization"]
    b = company_b.token("intake_clerk")["Authorization"]
    key = (await new_key(company_a))["X-API-Key"]
    for headers, field in (
        ([("Authorization", b), ("Authorization", a)], "header.Authorization"),
        ([("X-API-Key", key), ("X-API-Key", key)], "header.X-API-Key"),
    ):
        r = await client.get("/v1/complaints", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [(field, "single")]
    assert (await client.get("/v1/complaints", headers={"Authorization": a})).status_code == 200


async def test_tenant_rules_change_the_received_at_limit(client, resources, company_a):
    from intake.onboarding.apply import apply_document
    from intake.onboarding.document import validate_document

    # A company that accepts call-center tickets up to 14 days old.
    doc = validate_document(
        {
            "tenant": {
                "code": "LONGRULES",
                "name": "长规则物业",
                "rules": {"received_at_max_age_hours": 336},
            },
            "projects": [{"code": "P1", "name": "一期"}],
        }
    )
    report = await apply_document(resources.sessions, doc, actor="test")
    from propdesk.auth.tokens import issue_token

    token = issue_token(
        resources.settings, tenant_id=report.tenant_id, subject="t", roles=["intake_clerk"]
    )
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    r = await client.post(
        "/v1/complaints",
        json={"project": "P1", "channel": "call_center", "content": "电梯坏了", "received_at": old},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!!"}, "query.cursor"),
        ({"cursor": "W10"}, "query.cursor"),  # []
        ({"cursor": "WzEsMl0"}, "query.cursor"),  # [1,2]
        ({"cursor": "WyIyMDI2LTAxLTAxIiwiMSJd"}, "query.cursor"),  # ["2026-01-01","1"]
        ({"cursor": "eyJhIjoxfQ"}, "query.cursor"),  # {"a":1}
        ({"cursor": "x" * 501}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"received_from": "2026-01-01T00:00:00"}, "query.received_from"),
        ({"received_to": "yesterday"}, "query.received_to"),
        ({"received_from": "9999-12-31T23:59:59-14:00"}, "query.received_from"),
        ({"grade": "huge"}, "query.grade"),
        ({"q": ""}, "query.q"),
        ({"q": "x" * 201}, "query.q"),
        ({"status": "lost"}, "query.status"),
        ({"q": "漏\x00水"}, "query.q"),
        ({"project": "\x00"}, "query.project"),
        # The directory's lists answered these with 422; the complaint list listed nothing.
        ({"project": "SUN RISE"}, "query.project"),
        ({"project": "\xff"}, "query.project"),
        ({"project": "0f804261-343d-4486-bd70-a18c2d20zzzz"}, "query.project"),
        ({"project": ""}, "query.project"),
        # Given twice: Starlette took the last value silently.
        ({"limit": ["500", "1"]}, "query.limit"),
        ({"status": ["open", "closed"]}, "query.status"),
        # A range given backwards listed nothing, as if nothing had come in.
        (
            {"received_from": "2026-11-02T00:00:00Z", "received_to": "2026-11-01T00:00:00Z"},
            "query.received_from",
        ),
    ],
)
async def test_odd_list_queries_are_4xx_naming_the_parameter(client, company_a, params, field):
    r = await client.get("/v1/complaints", params=params, headers=company_a.token("intake_clerk"))
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_naive_cursor_from_outside_is_refused_and_a_real_one_works(client, company_a):
    import base64

    import orjson

    clerk = company_a.token("intake_clerk")
    raw = orjson.dumps(["2026-01-01T00:00:00", str(uuid4())])
    naive = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    r = await client.get("/v1/complaints", params={"cursor": naive}, headers=clerk)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"
    for _ in range(2):
        made = await client.post("/v1/complaints", json=GOOD, headers=clerk)
        assert made.status_code == 201, made.text
    page = await client.get("/v1/complaints", params={"limit": 1}, headers=clerk)
    nxt = page.json()["next_cursor"]
    assert (
        nxt
        and (
            await client.get("/v1/complaints", params={"cursor": nxt, "q": "%_\\"}, headers=clerk)
        ).status_code
        == 200
    )


@pytest.mark.parametrize("path", ["not-a-uuid", "00000000-0000-0000-0000-00000000000Z"])
async def test_odd_complaint_ids_on_read_and_timeline(client, company_a, path):
    clerk = company_a.token("intake_clerk")
    for url in (f"/v1/complaints/{path}", f"/v1/complaints/{path}/timeline"):
        r = await client.get(url, headers=clerk)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "path.complaint_id"
    missing = await client.get(f"/v1/complaints/{uuid4()}/timeline", headers=clerk)
    assert missing.status_code == 404


async def test_nul_and_occurred_at_name_their_rule(client, company_a):
    clerk = {**company_a.token("intake_clerk")}
    for payload, rule in (
        (with_(content="a\x00b"), "no_nul"),
        (with_(occurred_at="2199-01-01T00:00:00+08:00"), "not_after_received_at"),
        (with_(occurred_at="1990-01-01T00:00:00+08:00"), "max_age"),
    ):
        r = await client.post("/v1/complaints", json=payload, headers=clerk)
        assert r.status_code == 422, r.text
        assert [e["rule"] for e in r.json()["errors"]] == [rule], r.json()
    # A plausible occurrence time still records.
    ok = with_(
        content=f"电梯坏了 {uuid4().hex[:8]}",
        occurred_at=(datetime.now(UTC) - timedelta(days=30)).isoformat(),
    )
    r = await client.post("/v1/complaints", json=ok, headers=clerk)
    assert r.status_code == 201, r.text


async def test_nul_in_api_key_name_and_onboarding_names(client, company_a):
    admin = company_a.token("tenant_admin")
    for body, field in (
        ({"name": "crm\x00"}, "body.name"),
        ({"name": "crm", "projects": ["SUN\x00RISE"]}, "body.projects.0"),
    ):
        r = await client.post("/v1/api-keys", json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [(field, "no_nul")]
    # A key for no project at all is refused (omit `projects` for every project).
    r = await client.post("/v1/api-keys", json={"name": "crm", "projects": []}, headers=admin)
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body.projects", "too_short")]
    # JSON is YAML: its "\\u0000" escape reads as NUL.
    doc = orjson.dumps({"tenant": {"code": company_a.code, "name": "甲\x00物业"}})
    r = await client.post(
        "/v1/onboarding",
        content=doc,
        headers={**admin, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("tenant.name", "no_nul")]


async def test_nul_that_reaches_the_database_is_a_4xx(client, company_a):
    """Defence in depth: text PostgreSQL refuses (NUL in text or jsonb) that no model
    checked is a 422 problem, not a 500."""
    admin = company_a.token("tenant_admin")
    tenant = {"code": company_a.code, "name": "甲物业"}
    for doc in (
        {"tenant": {**tenant, "settings": {"x": "a\x00"}}},
        {
            "tenant": tenant,
            "projects": [{"code": "SUNRISE", "name": "阳光花园", "city": "上\x00海"}],
        },
    ):
        r = await client.post(
            "/v1/onboarding",
            content=orjson.dumps(doc),
            headers={**admin, "Content-Type": "application/yaml"},
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")


# Open311: every refusal in the spec's error list, in the format the path asks for.
OPEN311 = "/open311/v2"
GOOD_311 = {"service_code": "facility_repair", "description": "电梯坏了"}
UPLOAD = {"media": ("leak.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")}

OPEN311_CASES = [
    # (id, method, path, request keyword arguments, status, the error description starts)
    (
        "oversized body",
        "POST",
        "requests",
        {"data": {**GOOD_311, "description": "漏" * 100_000}},
        413,
        "body:",
    ),
    (
        "oversized streamed body",
        "POST",
        "requests",
        {"stream": True, "data": {**GOOD_311, "description": "漏" * 100_000}},
        413,
        "body:",
    ),
    (
        "too many fields",
        "POST",
        "requests",
        {"data": {**GOOD_311, **{f"f{i}": "x" for i in range(120)}}},
        400,
        "body:",
    ),
    ("media upload", "POST", "requests", {"data": GOOD_311, "files": UPLOAD}, 400, "media:"),
    (
        "NUL in description",
        "POST",
        "requests",
        {"data": {**GOOD_311, "description": "电梯\x00坏了"}},
        400,
        "description:",
    ),
    (
        "NUL in first_name",
        "POST",
        "requests",
        {"data": {**GOOD_311, "first_name": "敏\x00"}},
        400,
        "first_name:",
    ),
    (
        "NUL in an attribute",
        "POST",
        "requests",
        {"data": {**GOOD_311, "attribute[demand]": "\x00"}},
        400,
        "attribute[demand]:",
    ),
    (
        "occurred_at at the end of the calendar",
        "POST",
        "requests",
        {"data": {**GOOD_311, "attribute[occurred_at]": "9999-12-31T23:59:59-14:00"}},
        400,
        "attribute[occurred_at]:",
    ),
    (
        "occurred_at in 2199",
        "POST",
        "requests",
        {"data": {**GOOD_311, "attribute[occurred_at]": "2199-01-01T00:00:00+08:00"}},
        400,
        "attribute[occurred_at]:",
    ),
    (
        "NUL in service_request_id",
        "GET",
        "requests",
        {"params": {"service_request_id": "a\x00"}},
        400,
        "service_request_id:",
    ),
    ("NUL in a token", "GET", "tokens/a%00b", {}, 400, "token:"),
    (
        "start_date at the end of the calendar",
        "GET",
        "requests",
        {"params": {"start_date": "9999-12-30T00:00:00+00:00"}},
        400,
        "start_date:",
    ),
    (
        "end_date at the start of the calendar",
        "GET",
        "requests",
        {"params": {"end_date": "0001-01-02T00:00:00+00:00"}},
        400,
        "end_date:",
    ),
    (
        "updates from the end of the calendar",
        "GET",
        "servicerequestupdates",
        {"params": {"start_date": "9999-12-30T00:00:00+00:00"}},
        400,
        "start_date:",
    ),
    (
        "updates to the start of the calendar",
        "GET",
        "servicerequestupdates",
        {"params": {"end_date": "0001-01-02T00:00:00+00:00"}},
        400,
        "end_date:",
    ),
    (
        "jurisdiction_id twice",
        "GET",
        "services",
        {"params": {"jurisdiction_id": ["SUNRISE", "MOONLIGHT"]}},
        400,
        "jurisdiction_id:",
    ),
    (
        "start_date twice on the updates feed",
        "GET",
        "servicerequestupdates",
        {"params": {"start_date": ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]}},
        400,
        "start_date: give this parameter once",
    ),
    (
        "end_date twice on requests",
        "GET",
        "requests",
        {"params": {"end_date": ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]}},
        400,
        "end_date: give this parameter once",
    ),
    (
        "a form field twice",
        "POST",
        "requests",
        {"data": {"service_code": "noise", "description": ["楼上吵", "楼下吵"]}},
        400,
        "description: give this parameter once",
    ),
    (
        "api_key twice in the form",
        "POST",
        "requests",
        {"data": {"service_code": "noise", "description": "吵", "api_key": ["a", "b"]}},
        400,
        "api_key: give this parameter once",
    ),
    (
        "a JSON member twice",
        "POST",
        "requests",
        {
            "content": b'{"service_code": "noise", "description": "a", "description": "b"}',
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "description: give this parameter once",
    ),
    ("unknown endpoint", "GET", "nothing", {}, 404, "Not Found"),
    ("wrong method", "DELETE", "requests", {}, 405, "Method Not Allowed"),
]


@pytest.fixture(scope="module")
async def open311_key(new_key, company_a) -> str:
    return (await new_key(company_a, projects=["SUNRISE"]))["X-API-Key"]


def open311_errors(r, fmt: str) -> list[tuple[int, str]]:
    """The (code, description) pairs of an Open311 error answer, checking its format."""
    if fmt == "json":
        assert r.headers["content-type"].startswith("application/json"), r.headers
        return [(e["code"], e["description"]) for e in r.json()]
    assert r.headers["content-type"].startswith("text/xml"), r.headers
    root = ET.fromstring(r.content)
    assert root.tag == "errors", r.text
    return [
        (int(e.findtext("code") or 0), e.findtext("description") or "")
        for e in root.findall("error")
    ]


async def _stream(data: dict[str, str]):
    # No Content-Length: the body limit counts what arrives.
    from urllib.parse import urlencode

    raw = urlencode(data).encode()
    for i in range(0, len(raw), 64 * 1024):
        yield raw[i : i + 64 * 1024]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "needle"),
    OPEN311_CASES,
    ids=[c[0] for c in OPEN311_CASES],
)
async def test_bad_open311_input(
    client, open311_key, fmt, name, method, path, kwargs, status, needle
):
    kwargs = dict(kwargs)
    params = {"api_key": open311_key, **kwargs.pop("params", {})}
    if kwargs.pop("stream", False):
        kwargs = {
            "content": _stream(kwargs.pop("data")),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        }
    r = await client.request(method, f"{OPEN311}/{path}.{fmt}", params=params, **kwargs)
    assert r.status_code == status, r.text
    errors = open311_errors(r, fmt)
    assert errors and all(code == status for code, _ in errors), errors
    assert any(d.startswith(needle) for _, d in errors), errors


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_open311_server_error_is_in_open311_format(client, open311_key, monkeypatch, fmt):
    from intake.open311 import lookups

    async def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(lookups, "find_requests", broken)
    r = await client.get(f"{OPEN311}/requests.{fmt}", params={"api_key": open311_key})
    assert r.status_code == 500
    [(code, description)] = open311_errors(r, fmt)
    assert code == 500 and "request_id" in description


DEEP = 100_000


@pytest.mark.parametrize(
    ("raw", "code", "rule"),
    [
        (b'{"channel":"phone","content":"\xff\xfe"}', "bad-encoding", "utf8"),
        (b"[" * DEEP + b"]" * DEEP, "malformed-json", "max_depth"),
        (
            b'{"project":"SUNRISE","channel":"phone","content":"x","lat":' + b"[" * DEEP,
            "malformed-json",
            "max_depth",
        ),
        (
            b'{"project":"SUNRISE","channel":"phone","content":"x","lat":' + b"9" * 5000 + b"}",
            "malformed-json",
            "max_digits",
        ),
    ],
    ids=["utf8", "deep-array", "deep-lat", "long-lat"],
)
async def test_a_body_json_cannot_read_names_body_and_rule(client, company_a, raw, code, rule):
    headers = {**company_a.token("intake_clerk"), "Content-Type": "application/json"}
    r = await client.post("/v1/complaints", content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body", rule)]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"project":"SUNRISE","channel":"fax","content":"x","channel":"phone"}', "body.channel"),
        (
            b'{"project":"SUNRISE","channel":"phone","content":"x",'
            b'"complainant":{"name":"a","phone":"1","name":"b"}}',
            "body.complainant.name",
        ),
    ],
    ids=["top", "nested"],
)
async def test_a_member_given_twice_is_refused(client, company_a, raw, field):
    # Parsers disagree on which of the two counts (this one kept the last): neither does.
    headers = {**company_a.token("intake_clerk"), "Content-Type": "application/json"}
    r = await client.post("/v1/complaints", content=raw, headers=headers)
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [(field, "single")]


async def test_deep_or_long_values_json_can_read_are_field_errors(client, company_a):
    headers = {**company_a.token("intake_clerk"), "Content-Type": "application/json"}
    # Nesting short of the parser's limit; an integer too big for a float.
    for lat, rule in ((b"[" * 300 + b"]" * 300, "float_type"), (b"9" * 4000, "float_type")):
        raw = b'{"project":"SUNRISE","channel":"phone","content":"x","lat":' + lat + b',"long":1}'
        r = await client.post("/v1/complaints", content=raw, headers=headers)
        assert r.status_code == 422, r.text
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body.lat", rule)]
    admin = {**company_a.token("tenant_admin"), "Content-Type": "application/json"}
    r = await client.put(
        "/v1/rules",
        content=b'{"duplicate_window_hours":' + b"[" * 300 + b"]" * 300 + b"}",
        headers=admin,
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", None],
)
async def test_json_under_another_media_type_is_415(client, company_a, content_type):
    headers = dict(company_a.token("intake_clerk"))
    if content_type:
        headers["Content-Type"] = content_type
    r = await client.post("/v1/complaints", content=orjson.dumps(GOOD), headers=headers)
    assert r.status_code == 415, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unsupported-media-type"
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [
        ("header.Content-Type", "media_type")
    ]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON"])
async def test_json_media_types_with_parameters_are_json(client, company_a, content_type):
    headers = {**company_a.token("intake_clerk"), "Content-Type": content_type}
    r = await client.post("/v1/complaints", content=orjson.dumps(GOOD), headers=headers)
    assert r.status_code == 201, r.text
