"""The HTTP server every service runs: uvicorn on httptools, with bounds on the request
head and a problem+json answer for every request refused before the app sees it.

uvicorn's httptools protocol puts no bound on header fields (a 20 MB header was read and
handed to the app) and answers what it cannot parse, a request target over 65,535 bytes
among them, with a plain-text `400 Invalid HTTP request received.`. Here:

- a request target (path and query) over `MAX_TARGET_BYTES` is a 414 naming `url`;
- header fields over `MAX_HEADER_BYTES` together (names, values and their separators, as
  they came) are a 431 naming `headers` and the field that crossed the bound; a head still
  open after `HEAD_BUDGET` bytes (one endless header, sent piece by piece) is a 431 as it
  arrives, not once its line ends;
- anything else the parser refuses (a malformed request line, a bad header character,
  conflicting framing) is a 400 naming `request`;

each as `application/problem+json` with a request id, then the connection is closed, as
uvicorn does for its own 400 (the rest of the stream cannot be trusted). A refusal
pipelined behind requests still being answered is sent after their answers. The bounds are
those of common proxies (nginx reads a request line or header of up to 8 KiB by
default): generous for any client of these APIs, small enough that a connection cannot
make a worker hold megabytes. Open311's paths get the same body: the app's error format
is not reached.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

import orjson
import uvicorn
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from propdesk.service.middleware import REQUEST_ID_HEADER
from propdesk.service.problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    field_error,
    problem_type,
)

MAX_TARGET_BYTES = 16 * 1024
MAX_HEADER_BYTES = 32 * 1024

log = logging.getLogger("propdesk.http")

REFUSED_BEFORE_APP = Counter(
    "propdesk_http_refused_before_app",
    "Requests the HTTP server refused before the app saw them (414, 431, 400 malformed).",
    ["service", "status"],
)


class _HeadRefused(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers with a 400, which
    `send_400_response` turns into the refusal set before raising this."""


# What a request head may take in all before its headers are complete: the two bounds and
# the request line's method, version and line ends. httptools gathers a header's value
# itself and hands it over only at the line's end, so `on_header` alone would let one
# endless header fill memory (a copy of all of it per packet) before any check ran.
HEAD_BUDGET = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024
# The head is fed to the parser in pieces of at most this.
HEAD_PIECE = 8 * 1024

Refusal = tuple[int, str, str, str, FieldError]

_HEADERS_TOO_LARGE = (
    431,
    "Request Header Fields Too Large",
    "request-header-fields-too-large",
)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head and problem+json
    refusals. `service` labels the refusal counter (see `http_protocol`)."""

    service: ClassVar[str] = "unknown"
    _refusal: Refusal | None = None
    _header_bytes: int = 0
    # Between one request's end and the next one's headers: the bytes fed meanwhile.
    _head_open: bool = True
    _head_bytes: int = 0
    # A refusal waiting for the responses before it (pipelined requests) to be sent.
    _deferred: bytes | None = None
    # The request whose app runs (uvicorn starts one at a time, the others queue).
    _running: RequestResponseCycle | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._refusal = None
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open = True  # what comes next is the next request's head
        self._head_bytes = 0

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.transport.is_closing() and self._deferred is None:
            if not self._head_open:
                super().data_received(data if len(view) == len(data) else bytes(view))
                return
            allowance = HEAD_BUDGET - self._head_bytes
            if allowance <= 0:
                self._refusal = (
                    *_HEADERS_TOO_LARGE,
                    f"The request head exceeds {HEAD_BUDGET} bytes.",
                    field_error("headers", "max_bytes", f"at most {MAX_HEADER_BYTES} bytes"),
                )
                self.send_400_response("request head too large")
                return
            # In pieces, counted before they are fed: a request ending inside one leaves at
            # most the rest of that piece uncounted for the next.
            piece, view = view[: min(allowance, HEAD_PIECE)], view[min(allowance, HEAD_PIECE) :]
            self._head_bytes += len(piece)
            super().data_received(bytes(piece))

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_TARGET_BYTES:
            self._refusal = (
                414,
                "URI Too Long",
                "uri-too-long",
                f"The request target (path and query) exceeds {MAX_TARGET_BYTES} bytes.",
                field_error("url", "max_bytes", f"at most {MAX_TARGET_BYTES} bytes"),
            )
            raise _HeadRefused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > MAX_HEADER_BYTES:
            field = name.decode("latin-1")
            self._refusal = (
                *_HEADERS_TOO_LARGE,
                f"The header fields exceed {MAX_HEADER_BYTES} bytes together "
                f"(crossed at {field!r}).",
                field_error("headers", "max_bytes", f"at most {MAX_HEADER_BYTES} bytes"),
            )
            raise _HeadRefused
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._deferred is not None:
            return  # answered once, after the responses before it
        answer = self._refusal_bytes()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._write_and_close(answer)
            return
        if not self._head_open and cycle.more_body:
            # The bytes that broke are this request's body: its app waits for the rest,
            # which will never come. It hears of the end now.
            cycle.disconnected = True
            cycle.message_event.set()
            queued = next((entry for entry in self.pipeline if entry[0] is cycle), None)
            if queued is not None:
                # Not started: it is answered after the request before it, by the refusal.
                self.pipeline.remove(queued)
                self._deferred = answer
            elif not cycle.response_started:
                self._write_and_close(answer)
            else:
                self.transport.close()  # half an answer is out: only the end can follow
            return
        # A later request's head, pipelined behind one still being answered: written now,
        # the refusal would stand in for that answer. It waits for it and those queued.
        self._deferred = answer

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next queued request, if any
        running = self._running
        if (
            self._deferred is not None
            and not self.pipeline
            and (running is None or running.response_complete)
            and not self.transport.is_closing()
        ):
            self._write_and_close(self._deferred)

    def _write_and_close(self, answer: bytes) -> None:
        self.transport.write(answer)
        self.transport.close()

    def _refusal_bytes(self) -> bytes:
        status, title, code, detail, error = self._refusal or (
            400,
            "Malformed HTTP request",
            "malformed-request",
            "The request is not valid HTTP/1.1 and cannot be read.",
            field_error("request", "http", "not a valid HTTP/1.1 request"),
        )
        REFUSED_BEFORE_APP.labels(self.service, str(status)).inc()
        request_id = uuid.uuid4().hex
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.warning(
            "refused before the app: %d %s from %s (%s)",
            status,
            code,
            client,
            detail,
            extra={"status": status, "code": code, "client": client, "request_id": request_id},
        )
        body = orjson.dumps(
            {
                "type": problem_type(code),
                "title": title,
                "status": status,
                "code": code,
                "detail": detail,
                "errors": [error],
                "request_id": request_id,
            }
        )
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                f"content-type: {PROBLEM_CONTENT_TYPE}\r\n".encode("latin-1"),
                f"content-length: {len(body)}\r\n".encode("latin-1"),
                f"{REQUEST_ID_HEADER.lower()}: {request_id}\r\n".encode("latin-1"),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        return b"".join(head)


def http_protocol(service: str) -> type[ProblemHttpToolsProtocol]:
    """The protocol class for one service's server (its refusals counted under its name)."""
    return type("ProblemHttpToolsProtocol", (ProblemHttpToolsProtocol,), {"service": service})


class _ParserWarningSaidBetter(logging.Filter):
    """uvicorn logs "Invalid HTTP request received." for every request its parser stops,
    a 414 or a 431 of ours included: `propdesk.http` says which, with the client."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_PARSER_WARNING_FILTER = _ParserWarningSaidBetter()


def server_config(
    app: Any, *, service: str, host: str, port: int, drain_seconds: float
) -> uvicorn.Config:
    """The uvicorn configuration every service runs with: logs through the service's own
    (no uvicorn access log: the request middleware writes one line per request), no proxy
    headers trusted, and a graceful drain of `drain_seconds` on shutdown."""
    logging.getLogger("uvicorn.error").addFilter(_PARSER_WARNING_FILTER)  # once: a set
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_protocol(service),
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        timeout_graceful_shutdown=drain_seconds,
    )
