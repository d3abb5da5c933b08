"""Pure ASGI middleware for every propdesk API (no BaseHTTPMiddleware: it costs a task and
a memory stream per request, which the intake benchmark would see)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from propdesk.service.metrics import UNMATCHED_ROUTE, observe_request
from propdesk.service.problems import (
    PayloadTooLarge,
    database_refusal,
    internal_error_response,
    payload_too_large_response,
)
from propdesk.service.request_context import RequestInfo, request_info_var

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = b"x-request-id"
# A client's id is trusted only if it cannot break a log line or a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
# Probes and scrapes log at debug: at one per few seconds per replica they would drown the
# lines anyone reads.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

access_log = logging.getLogger("propdesk.access")
error_log = logging.getLogger("propdesk.service.errors")


def _request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == _REQUEST_ID_KEY:
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestMiddleware:
    """Request id, metrics, access log, and the last line of defence against a 500 leak."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        encoded_id = request_id.encode("latin-1")
        info = RequestInfo(request_id)
        token = request_info_var.set(info)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((_REQUEST_ID_KEY, encoded_id))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            refused = None if response_started else database_refusal(exc)
            if refused is not None:
                # The database refused the request's data, not a server fault: a 4xx.
                what, answer = refused
                error_log.warning("%s in %s %s: %s", what, scope["method"], scope["path"], exc)
                await answer(scope["path"])(scope, receive, send_with_id)
                return
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            error_log.error(
                "unhandled error in %s %s", scope["method"], scope["path"], exc_info=exc
            )
            if response_started:
                # Half a response is on the wire; only the server can end the connection.
                raise
            await internal_error_response(scope["path"])(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            observe_request(self.service, scope["method"], template, status, elapsed)
            path = scope["path"]
            level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %d %.1fms",
                    scope["method"],
                    path,
                    status,
                    elapsed * 1000,
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            request_info_var.reset(token)


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`, decided before the body is read when Content-Length
    says so, and after at most `max_bytes` (plus one chunk) for streamed bodies."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await payload_too_large_response(limit, scope["path"])(scope, receive, send)
                    return
                if declared >= 0:
                    # The server holds the client to its Content-Length: nothing to count.
                    await self.app(scope, receive, send)
                    return
                break
        await self._stream_limited(scope, receive, send, limit)

    async def _stream_limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if exceeded and message["type"] == "http.response.start" and message["status"] != 413:
                # The endpoint swallowed PayloadTooLarge and answered something else; the
                # client still deserves to learn what was wrong.
                replaced = True
                response: Any = payload_too_large_response(limit, scope["path"])
                await response(scope, receive, send)
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class HeadAsGetMiddleware:
    """HEAD answered as GET without its body (RFC 9110 §9.3.2: a general-purpose server
    must support both). FastAPI routes a GET operation for GET only, and declaring HEAD on
    each would give OpenAPI a second operation of the same id; so the router, mounted
    inside this, sees GET, while the middleware outside it (access log, metrics, tracing)
    sees HEAD. The server drops the body of a HEAD response (uvicorn reads the method from
    its own scope) and keeps its Content-Length. A path with no GET answers 405 with its
    Allow header, as for any other method."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the server's own scope must keep HEAD while the response is sent.
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, send)
        finally:
            # What routing put there (the route, for the metrics' template) goes back out.
            scope.update({k: v for k, v in inner.items() if k != "method"})
