"""The services' HTTP server (`propdesk.service.http_server`) on a real socket: requests
refused before the app (a long request target, oversized header fields, bytes that are not
HTTP) get problem+json; HEAD is answered as GET without a body."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn
from fastapi import APIRouter, Request
from prometheus_client import REGISTRY

from propdesk.devstack.ports import free_port
from propdesk.service.app import create_service_app
from propdesk.service.http_server import (
    HEAD_BUDGET,
    HEAD_PIECE,
    MAX_HEADER_BYTES,
    MAX_TARGET_BYTES,
    server_config,
)
from propdesk.service.logging import configure_logging
from propdesk.service.query_params import READS_RAW_QUERY
from propdesk.settings import Settings

SERVICE = "httpsrv"
HOST = "127.0.0.1"

things = APIRouter()


@things.get("/things", openapi_extra=READS_RAW_QUERY)
async def list_things() -> dict[str, object]:
    return {"items": ["a", "b"]}


@things.post("/things", status_code=201)
async def make_thing() -> dict[str, str]:
    return {"id": "new"}


@things.post("/echo", openapi_extra=READS_RAW_QUERY)
async def echo(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}


@things.post("/submissions", status_code=201)
async def submit() -> dict[str, str]:
    return {"id": "new"}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = create_service_app(SERVICE, settings=Settings(), routers=[things], configure_logs=False)
    chosen = free_port()
    server = uvicorn.Server(
        server_config(app, service=SERVICE, host=HOST, port=chosen, drain_seconds=1)
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    try:
        yield chosen
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def connected(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_answer(
    reader: asyncio.StreamReader, *, body: bool = True, within: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (none for a HEAD's)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    content = await asyncio.wait_for(reader.readexactly(length), within) if body else b""
    return int(lines[0].split(" ")[1]), headers, content


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a new connection and read the first answer."""
    async with connected(port) as (reader, writer):
        writer.write(raw)
        await writer.drain()
        return await read_answer(reader, body=not raw.startswith(b"HEAD "))


def request(target: str, *, method: str = "GET", headers: bytes = b"") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n".encode() + headers + b"\r\n"


def refused(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "propdesk_http_refused_before_app_total", {"service": SERVICE, "status": status}
    )
    return value or 0.0


async def test_a_request_target_over_the_bound_is_a_414_problem(port: int) -> None:
    before = refused("414")
    target = "/things?q=" + "a" * MAX_TARGET_BYTES
    status, headers, body = await exchange(port, request(target))
    assert status == 414
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = orjson.loads(body)
    assert problem["code"] == "uri-too-long"
    assert problem["errors"] == [
        {"field": "url", "rule": "max_bytes", "message": f"at most {MAX_TARGET_BYTES} bytes"}
    ]
    assert problem["request_id"] == headers["x-request-id"]
    assert refused("414") == before + 1


async def test_a_refusal_is_logged_as_what_it_is(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = configure_logging(SERVICE, Settings(log_json=True), stream=stream)
    try:
        status, headers, _ = await exchange(port, request("/things?q=" + "a" * MAX_TARGET_BYTES))
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # The service's JSON line carries the id the client got (no request context to give it).
    assert [(ln["logger"], ln["request_id"]) for ln in lines if ln["level"] == "warning"] == [
        ("propdesk.http", headers["x-request-id"])
    ]
    assert status == 414
    said = [r for r in caplog.records if r.name == "propdesk.http"]
    assert [(r.status, r.code, r.request_id) for r in said] == [  # type: ignore[attr-defined]
        (414, "uri-too-long", headers["x-request-id"])
    ]
    assert "from 127.0.0.1:" in said[0].getMessage()
    # uvicorn's own line said "Invalid HTTP request received." for every one of them.
    assert not [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]


async def test_beyond_httptools_own_url_limit_the_answer_is_still_a_problem(port: int) -> None:
    # uvicorn alone answered a target over 65,535 bytes in plain text.
    status, _, body = await exchange(port, request("/things?q=" + "a" * 70_000))
    assert status == 414
    assert orjson.loads(body)["code"] == "uri-too-long"


async def test_a_target_within_the_bound_reaches_the_app(port: int) -> None:
    target = "/things?q=" + "a" * (MAX_TARGET_BYTES - 200)
    status, _, body = await exchange(port, request(target))
    assert status == 200
    assert orjson.loads(body) == {"items": ["a", "b"]}


async def test_one_huge_header_is_a_431_naming_it(port: int) -> None:
    big = b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n"
    status, headers, body = await exchange(port, request("/things", headers=big))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    problem = orjson.loads(body)
    assert problem["code"] == "request-header-fields-too-large"
    assert problem["errors"][0]["field"] == "headers"
    assert "'x-big'" in problem["detail"].lower()


async def test_many_headers_over_the_bound_together_are_a_431(port: int) -> None:
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))
    status, _, body = await exchange(port, request("/things", headers=many))
    assert status == 431
    assert orjson.loads(body)["code"] == "request-header-fields-too-large"


async def drip_until_answered(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, wait: float
) -> tuple[int, bytes]:
    """Send an endless header value, 64 KiB a write, until the server answers (at most
    4 MiB): the bytes sent and the answer's first bytes."""
    sent, answer = 0, b""
    while sent < 4 * 1024 * 1024 and not answer:
        try:
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
        except ConnectionError:
            break
        with contextlib.suppress(TimeoutError):
            answer = await asyncio.wait_for(reader.read(4096), wait)
    return sent, answer


async def test_an_endless_header_is_refused_early_and_stalls_no_one(port: int) -> None:
    """httptools gathers a header's value itself and hands it over at the line's end: a
    header sent in pieces and never ended must be refused by what it has taken so far."""
    async with connected(port) as (reader, writer):
        writer.write(b"GET /things HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, answer = await drip_until_answered(reader, writer, wait=0.05)
        # Meanwhile another client is served at once.
        started = asyncio.get_running_loop().time()
        status, _, _ = await exchange(port, request("/things"))
        assert status == 200
        assert asyncio.get_running_loop().time() - started < 1.0
        answer = answer or await asyncio.wait_for(reader.read(4096), 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request-header-fields-too-large" in answer
    assert sent <= 4 * 65536, sent  # refused at about 48 KiB, not after megabytes


async def test_the_head_bound_holds_for_every_request_of_a_connection(port: int) -> None:
    """The second request of a connection, its first bytes in a read of their own: its
    head is counted from its first byte (it was let through one whole read unbounded)."""
    async with connected(port) as (reader, writer):
        writer.write(request("/things"))
        assert (await read_answer(reader))[0] == 200
        writer.write(b"GET /things HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, answer = await drip_until_answered(reader, writer, wait=0.2)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert sent < HEAD_BUDGET + HEAD_PIECE + 65536, sent  # one write in flight at most


async def test_a_refusal_pipelined_behind_a_request_waits_for_its_answer(port: int) -> None:
    big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n"
    async with connected(port) as (reader, writer):
        writer.write(request("/things") + request("/things", headers=big))
        status, _, body = await read_answer(reader)
        assert status == 200 and orjson.loads(body) == {"items": ["a", "b"]}
        assert (await read_answer(reader))[0] == 431


BROKEN_CHUNKED = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
)


async def statuses(port: int, raw: bytes) -> list[int]:
    """The statuses of the answers to `raw`, in order, until the server closes."""
    found = []
    async with connected(port) as (reader, writer):
        writer.write(raw)
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                found.append((await read_answer(reader, within=5))[0])
    return found


async def test_a_body_that_breaks_is_answered_at_once(port: int) -> None:
    """The parser stops inside the body of the request being answered: its app, waiting
    for the rest, hears of the end, and the client gets the 400 (it waited for ever)."""
    assert await statuses(port, BROKEN_CHUNKED) == [400]


async def test_a_body_that_breaks_behind_a_request_is_answered_after_it(port: int) -> None:
    assert await statuses(port, request("/things") + BROKEN_CHUNKED) == [200, 400]


async def test_headers_within_the_bound_reach_the_app(port: int) -> None:
    some = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
    status, _, _ = await exchange(port, request("/things", headers=some))
    assert status == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /things HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n",
        b"POST /things HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nabc",
    ],
    ids=["request-line", "header-name", "two-framings"],
)
async def test_bytes_that_are_not_http_are_a_400_problem(port: int, raw: bytes) -> None:
    status, headers, body = await exchange(port, raw)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    problem = orjson.loads(body)
    assert problem["code"] == "malformed-request"
    assert problem["errors"][0]["field"] == "request"


async def test_head_is_answered_as_get_without_a_body(port: int) -> None:
    _, get_headers, get_body = await exchange(port, request("/things"))
    before = REGISTRY.get_sample_value(
        "propdesk_http_requests_total",
        {"service": SERVICE, "method": "HEAD", "route": "/things", "status": "200"},
    )
    async with connected(port) as (reader, writer):
        # Two requests on one connection: the HEAD answer must carry no body, or the next
        # answer would be read from the middle of it.
        writer.write(request("/things", method="HEAD") + request("/things"))
        status, headers, _ = await read_answer(reader, body=False)
        assert status == 200 and headers["content-length"] == str(len(get_body))
        status, _, body = await read_answer(reader)
        assert status == 200 and body == get_body
    assert get_headers["content-length"] == str(len(get_body))
    # The metrics (outside the router) count it as HEAD.
    after = REGISTRY.get_sample_value(
        "propdesk_http_requests_total",
        {"service": SERVICE, "method": "HEAD", "route": "/things", "status": "200"},
    )
    assert (after or 0) == (before or 0) + 1


async def test_head_where_there_is_no_get_is_a_405(port: int) -> None:
    status, headers, _ = await exchange(port, request("/submissions", method="HEAD"))
    assert status == 405
    assert headers["allow"] == "POST"
    status, _, _ = await exchange(port, request("/nowhere", method="HEAD"))
    assert status == 404


async def test_the_openapi_document_lists_get_only(port: int) -> None:
    _, _, body = await exchange(port, request("/openapi.json"))
    assert set(orjson.loads(body)["paths"]["/things"]) == {"get", "post"}
