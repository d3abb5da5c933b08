"""JSON bodies FastAPI cannot read, or that are not JSON at all: each a problem naming the
body (or its Content-Type) and the rule, never a bare "error parsing the body"."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Body, FastAPI, Request
from pydantic import BaseModel, Field

from propdesk.service import create_service_app
from propdesk.service.problems import PROBLEM_CONTENT_TYPE
from propdesk.settings import Settings
from propdesk.testing.asgi_client import asgi_client

router = APIRouter()


class Point(BaseModel):
    channel: str = "phone"
    content: str = Field(default="", max_length=50)
    lat: float | None = None


@router.post("/points", status_code=201)
async def create_point(point: Point) -> dict[str, str]:
    return {"content": point.content}


@router.put("/settings")
async def put_settings(body: dict[str, Any] = Body(...)) -> dict[str, int]:
    return {"keys": len(body)}


@router.post("/optional")
async def optional_body(point: Point | None = None) -> dict[str, bool]:
    return {"given": point is not None}


@router.post("/raw")
async def raw(request: Request) -> dict[str, int]:
    # Reads its own body (as onboarding and Open311 do): any media type is its business.
    return {"size": len(await request.body())}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = Settings(max_body_bytes=512 * 1024, log_json=True)
    return create_service_app("testsvc", settings=settings, routers=[router], configure_logs=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


def errors_of(resp: httpx.Response, status: int, code: str) -> list[tuple[str, str]]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = resp.json()
    assert problem["code"] == code and problem["status"] == status
    assert "error parsing the body" not in problem.get("detail", "")
    assert all(e["message"] for e in problem["errors"])
    return [(e["field"], e["rule"]) for e in problem["errors"]]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("raw", "code", "rule"),
    [
        (b'{"channel":"phone","content":"\xff\xfe"}', "bad-encoding", "utf8"),
        (b'{"channel":"phone","content":"\xe7\x94"}', "bad-encoding", "utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed-json", "max_depth"),
        (b'{"lat": ' + b"[" * 5000 + b"]" * 5000 + b"}", "malformed-json", "max_depth"),
        (b'{"lat": ' + b"1" * 5000 + b"}", "malformed-json", "max_digits"),
        (b'{"channel": "phone",', "malformed-json", "json"),
    ],
    ids=["utf8", "truncated-utf8", "deep-array", "deep-field", "long-number", "syntax"],
)
async def test_an_unreadable_json_body_names_body_and_rule(
    client: httpx.AsyncClient, raw: bytes, code: str, rule: str
) -> None:
    for path, method in (("/points", "POST"), ("/settings", "PUT")):
        resp = await client.request(method, path, content=raw, headers=JSON)
        assert errors_of(resp, 400, code) == [("body", rule)]
    if rule == "max_digits":
        limit = str(sys.get_int_max_str_digits())
        assert limit in resp.json()["errors"][0]["message"]
    if rule == "utf8":
        assert "0x" in resp.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        None,
    ],
)
async def test_json_in_another_media_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for method, path in (("POST", "/points"), ("PUT", "/settings"), ("POST", "/optional")):
        resp = await client.request(method, path, content=b'{"content": "x"}', headers=headers)
        assert errors_of(resp, 415, "unsupported-media-type") == [
            ("header.Content-Type", "media_type")
        ]
        assert (content_type or "no Content-Type") in resp.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/problem+json",
    ],
)
async def test_json_media_types_are_read(client: httpx.AsyncClient, content_type: str) -> None:
    resp = await client.post(
        "/points", content=b'{"content": "x"}', headers={"content-type": content_type}
    )
    assert resp.status_code == 201, resp.text
    # And a JSON body that does not fit is still the fields' fault, not the media type's.
    resp = await client.post(
        "/points", content=b'{"content": 5}', headers={"content-type": content_type}
    )
    assert errors_of(resp, 422, "validation-failed") == [("body.content", "string_type")]


async def test_no_body_and_bodies_a_handler_reads_itself_are_left_alone(
    client: httpx.AsyncClient,
) -> None:
    # No body at all: the fields are missing (or optional), whatever the Content-Type.
    for headers in ({}, {"content-type": "text/plain"}):
        resp = await client.post("/points", headers=headers)
        assert errors_of(resp, 422, "validation-failed") == [("body", "missing")]
        resp = await client.post("/optional", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"given": False}
    for content_type in ("application/yaml", "application/x-www-form-urlencoded", "image/png"):
        resp = await client.post(
            "/raw", content=b"a=1&b=\xff", headers={"content-type": content_type}
        )
        assert resp.status_code == 200 and resp.json() == {"size": 7}
    # Other errors than the body's keep their own answers.
    resp = await client.post("/points/extra", content=b"x", headers={"content-type": "text/plain"})
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/points", b'{"channel": "fax", "channel": "phone"}', "body.channel"),
        ("/points", b'{"content": "a", "lat": 1, "content": "b"}', "body.content"),
        # Deeper: the path names it, lists by index; the outermost repeat is named first.
        ("/settings", b'{"a": {"x": 1, "x": 2}}', "body.a.x"),
        ("/settings", b'{"a": [{"y": 1}, {"z": 1, "z": 2}]}', "body.a.1.z"),
        ("/settings", b'{"b": {"x": 1, "x": 2}, "b": 1}', "body.b"),
    ],
    ids=["top", "apart", "nested", "in-list", "outer-first"],
)
async def test_a_member_given_twice_is_refused_not_read_as_the_last(
    client: httpx.AsyncClient, path: str, raw: bytes, field: str
) -> None:
    method = "POST" if path == "/points" else "PUT"
    resp = await client.request(method, path, content=raw, headers=JSON)
    assert errors_of(resp, 422, "validation-failed") == [(field, "single")]


async def test_members_repeated_only_across_objects_are_fine(client: httpx.AsyncClient) -> None:
    raw = b'{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 1}]}'
    resp = await client.put("/settings", content=raw, headers=JSON)
    assert resp.status_code == 200 and resp.json() == {"keys": 3}


async def test_bodies_a_handler_reads_itself_are_its_own_business(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post("/raw", content=b'{"x": 1, "x": 2}', headers=JSON)
    assert resp.status_code == 200


async def test_no_depth_lets_a_repeated_member_through(client: httpx.AsyncClient) -> None:
    """The check parses deeper in the stack than FastAPI: at the depths where only FastAPI
    could read the body, the answer is FastAPI's own refusal, never the last member."""
    answers = set()
    for depth in range(800, 1100, 3):
        raw = b'{"a": 1, "a": 2, "b": ' + b"[" * depth + b"]" * depth + b"}"
        resp = await client.put("/settings", content=raw, headers=JSON)
        assert resp.status_code in (400, 422), (depth, resp.text)
        problem = resp.json()
        answers.add((resp.status_code, problem["errors"][0]["field"], problem["errors"][0]["rule"]))
    assert answers <= {(422, "body.a", "single"), (400, "body", "max_depth")}, answers
