"""RFC 9457 problem details: every error a propdesk API returns is application/problem+json.

Body: type, title, status, detail, instance (the request path), code (stable, for clients
to branch on), errors ([{field, rule, message}] naming what was wrong with the input), and
request_id. Raise `ProblemError` from any handler or dependency for a 4xx.
"""

from __future__ import annotations

import email.message
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, TypedDict

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from propdesk.service.request_context import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://propdesk.dev/problems/"

log = logging.getLogger("propdesk.service.problems")


class FieldError(TypedDict):
    field: str
    rule: str
    message: str


def field_error(field: str, rule: str, message: str) -> FieldError:
    return {"field": field, "rule": rule, "message": message}


class ProblemError(Exception):
    """A request the service refuses, rendered as problem+json with `status`."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        code: str,
        detail: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status = status
        self.title = title
        self.code = code
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers) if headers else None
        self.extensions = dict(extensions) if extensions else None

    @property
    def type_uri(self) -> str:
        return problem_type(self.code)


def invalid(field: str, rule: str, message: str, *, detail: str | None = None) -> ProblemError:
    """The 422 `validation-failed` problem of one field and the rule it broke; its detail
    is `field: message` unless another is given."""
    return ProblemError(
        422,
        "Request validation failed",
        code="validation-failed",
        detail=detail if detail is not None else f"{field}: {message}",
        errors=[field_error(field, rule, message)],
    )


def problem_type(code: str) -> str:
    return PROBLEM_TYPE_BASE + code


def status_code_slug(status: int) -> str:
    """'not-found' for 404, 'method-not-allowed' for 405: the default code for a status."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "error"


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    title: str,
    *,
    code: str,
    detail: str | None = None,
    instance: str | None = None,
    errors: Iterable[FieldError] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "code": code,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    if extensions:
        # Extension members never overwrite the standard ones.
        body.update({k: v for k, v in extensions.items() if k not in body})
    body["request_id"] = current_request_id()
    return body


def problem_response(
    status: int,
    title: str,
    *,
    code: str,
    detail: str | None = None,
    instance: str | None = None,
    errors: Iterable[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    body = problem_body(
        status,
        title,
        code=code,
        detail=detail,
        instance=instance,
        errors=errors,
        extensions=extensions,
    )
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_CONTENT_TYPE,
    )


class PayloadTooLarge(StarletteHTTPException):
    """Raised from the body-limit middleware's receive(); an HTTPException so that FastAPI's
    body parsing lets it through instead of turning it into a generic 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")
        self.limit = limit


def payload_too_large_response(limit: int, instance: str | None) -> Response:
    return problem_response(
        413,
        "Request body too large",
        code="payload-too-large",
        detail=f"The request body exceeds {limit} bytes.",
        instance=instance,
        errors=[field_error("body", "max_bytes", f"at most {limit} bytes are accepted")],
    )


def utf8_error(exc: UnicodeDecodeError, field: str = "body") -> FieldError:
    """The entry for a body that is not UTF-8, naming the first byte that is not."""
    return field_error(
        field,
        "utf8",
        f"not valid UTF-8: byte 0x{exc.object[exc.start]:02x} at position {exc.start}",
    )


# FastAPI's HTTPException detail when its JSON body parsing fails with anything but a
# syntax error (that one is a RequestValidationError, `json_invalid`); the cause is chained.
BODY_PARSE_FAILED = "There was an error parsing the body"


def body_parse_problem(exc: StarletteHTTPException, instance: str | None) -> Response | None:
    """The precise problem behind FastAPI's generic "error parsing the body" 400: a body
    that is not UTF-8, JSON nested deeper than the parser goes, an integer with more digits
    than Python converts. None for any other HTTPException."""
    if exc.status_code != 400 or exc.detail != BODY_PARSE_FAILED:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        error = utf8_error(cause)
        return problem_response(
            400,
            "Bad Request",
            code="bad-encoding",
            detail=f"The request body must be UTF-8 JSON; it is {error['message']}.",
            instance=instance,
            errors=[error],
        )
    if isinstance(cause, RecursionError):
        error = field_error("body", "max_depth", NESTED_TOO_DEEPLY)
    elif isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        limit = sys.get_int_max_str_digits()
        error = field_error("body", "max_digits", f"a number may have at most {limit} digits")
    else:
        error = field_error("body", "json", "the body could not be read as JSON")
    problem = malformed_json(error)
    return problem_response(
        problem.status,
        problem.title,
        code=problem.code,
        detail=problem.detail,
        instance=instance,
        errors=problem.errors,
    )


NESTED_TOO_DEEPLY = "arrays and objects nest too deeply"


def malformed_json(error: FieldError) -> ProblemError:
    """The 400 `malformed-json` problem of a body that cannot be read, for `error`."""
    return ProblemError(
        400,
        "Malformed JSON",
        code="malformed-json",
        detail=f"The request body cannot be read: {error['message']}.",
        errors=[error],
    )


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or any application/*+json, parameters aside (as FastAPI reads it)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def unsupported_media_type_response(content_type: str | None, instance: str | None) -> Response:
    got = f"Content-Type {content_type}" if content_type else "no Content-Type"
    return problem_response(
        415,
        "Unsupported Media Type",
        code="unsupported-media-type",
        detail=f"The request body must be JSON (Content-Type: application/json); it has {got}.",
        instance=instance,
        errors=[
            field_error(
                "header.Content-Type",
                "media_type",
                "must be application/json (or an application/*+json type)",
            )
        ],
    )


def _loc_to_field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors():
        out.append(
            field_error(_loc_to_field(err.get("loc", ())), str(err.get("type")), err.get("msg", ""))
        )
    return out


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.title,
        code=exc.code,
        detail=exc.detail,
        instance=request.url.path,
        errors=exc.errors,
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if isinstance(exc.body, bytes) and any(e.get("loc", ())[:1] == ("body",) for e in errors):
        # FastAPI hands a JSON body field the raw bytes when the media type is not JSON:
        # what failed is the Content-Type, not the fields ("Input should be a valid
        # dictionary"). Form fields arrive as FormData, a body-less request as None.
        content_type = request.headers.get("content-type")
        if not is_json_media_type(content_type):
            return unsupported_media_type_response(content_type, request.url.path)
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        reason = (malformed[0].get("ctx") or {}).get("error") or "invalid JSON"
        loc = malformed[0].get("loc", ())
        position = f" at position {loc[1]}" if len(loc) > 1 else ""
        return problem_response(
            400,
            "Malformed JSON",
            code="malformed-json",
            detail=f"The request body is not valid JSON: {reason}{position}.",
            instance=request.url.path,
            errors=[field_error("body", "json", f"{reason}{position}")],
        )
    return problem_response(
        422,
        "Request validation failed",
        code="validation-failed",
        detail=f"{len(errors)} field(s) failed validation.",
        instance=request.url.path,
        errors=validation_errors(exc),
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, PayloadTooLarge):
        return payload_too_large_response(exc.limit, request.url.path)
    parse_failure = body_parse_problem(exc, request.url.path)
    if parse_failure is not None:
        return parse_failure
    status = exc.status_code
    phrase = status_title(status)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    return problem_response(
        status,
        phrase,
        code=status_code_slug(status),
        detail=detail,
        instance=request.url.path,
        headers=exc.headers,
    )


# SQLSTATEs of text PostgreSQL refuses to store: NUL in `text` (character_not_in_repertoire)
# and `\u0000` in `jsonb` (untranslatable_character, also a character the server encoding
# lacks). The request's fault, not the server's.
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def is_unstorable_text(exc: BaseException) -> bool:
    """Whether `exc`, or an error behind it (SQLAlchemy wraps the driver's: `orig`,
    `__cause__`), is the database refusing the text it was given."""
    return any(
        getattr(current, "sqlstate", None) in UNSTORABLE_TEXT_SQLSTATES for current in _causes(exc)
    )


def is_outside_scope(exc: BaseException) -> bool:
    """Whether `exc` (or an error behind it) is row-level security refusing a write: the
    caller tried to write outside its tenant or projects (SQLSTATE 42501 with the policy
    named). The API checks scope first; this is the last line."""
    for current in _causes(exc):
        if getattr(current, "sqlstate", None) == "42501" and "row-level security" in str(current):
            return True
    return False


def outside_scope_response(instance: str | None) -> Response:
    return problem_response(
        403,
        "Forbidden",
        code="outside-scope",
        detail="The change would write outside the tenant or projects of this credential.",
        instance=instance,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors behind it (SQLAlchemy wraps the driver's: `orig`, `__cause__`)."""
    out: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return out


def unstorable_text_response(instance: str | None) -> Response:
    # The last line of defence: the API models refuse NUL field by field (rule `no_nul`,
    # propdesk.service.text); this answers for any text that slipped past them.
    return problem_response(
        422,
        "Request validation failed",
        code="validation-failed",
        detail="The request holds text the database cannot store: the NUL character "
        "(\\u0000), or a character its encoding lacks.",
        instance=instance,
        errors=[
            field_error(
                "request",
                "string_characters",
                "text must not contain the NUL character (\\u0000)",
            )
        ],
    )


def internal_error_response(instance: str | None) -> Response:
    # Nothing about the failure goes to the client; the log line has it, under the same
    # request and trace ids the client can quote.
    return problem_response(
        500,
        "Internal Server Error",
        code="internal-error",
        detail="The server failed to handle this request; quote the request_id to support.",
        instance=instance,
    )


# Database errors that are the request's fault (the API's own checks should have answered
# first): what to log, and the problem to answer with instead of a 500.
Answer = Callable[[str | None], Response]
_REFUSALS: tuple[tuple[Callable[[BaseException], bool], str, Answer], ...] = (
    (is_unstorable_text, "text the database cannot store", unstorable_text_response),
    (is_outside_scope, "a write outside the caller's scope", outside_scope_response),
)


def database_refusal(exc: BaseException) -> tuple[str, Answer] | None:
    """(what to log, the answer) when `exc` is the database refusing the request's data."""
    for matches, what, answer in _REFUSALS:
        if matches(exc):
            return what, answer
    return None


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    refused = database_refusal(exc)
    if refused is not None:
        what, answer = refused
        log.warning("%s: %s", what, exc)
        return answer(request.url.path)
    log.error("unhandled error", exc_info=exc)
    return internal_error_response(request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, handle_problem)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
