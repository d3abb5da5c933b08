"""What the OpenAPI documents say of errors.

Every answer of 400 and up from a propdesk API is `application/problem+json`
(`propdesk.service.problems`), yet FastAPI documents each operation's 422 as its own
`HTTPValidationError` (`{"detail": [{"loc", "msg", "type"}]}`), which no propdesk service
ever sends: a client generated from `/openapi.json` would parse every refusal wrong. So the
documents name one `Problem` schema for 4XX and 5XX on every operation, and the 422 of
input validation is that schema too.

An operation that answers errors in another shape (Open311's error list) declares its own
`4XX`; it keeps it, and FastAPI's 422 is dropped from it rather than turned into a
problem it never sends.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from propdesk.service.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

PROBLEM = "Problem"
FIELD_ERROR = "ProblemFieldError"
_REF = "#/components/schemas/"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": FIELD_ERROR,
    "type": "object",
    "required": ["field", "rule", "message"],
    "properties": {
        "field": {
            "type": "string",
            "description": "`body.<path>`, `query.<name>`, `header.<name>` or `path.<name>`; "
            "`body` for the body as a whole; a document's own path in an onboarding file "
            "(`projects[0].time_zone`); `request`, `url` or `headers` for a request refused "
            "before the app",
            "examples": ["body.channel"],
        },
        "rule": {
            "type": "string",
            "description": "the rule broken, machine-readable (pydantic's error type or "
            "the name of the check)",
            "examples": ["enum"],
        },
        "message": {"type": "string"},
        "line": {"type": "integer", "description": "onboarding files: the field's line"},
        "column": {"type": "integer", "description": "onboarding files: its column"},
    },
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": PROBLEM,
    "description": "RFC 9457 problem details. Members other than these are extensions "
    "of the problem's code (e.g. `current_state` of a 409 or 412).",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "examples": [PROBLEM_TYPE_BASE + "validation-failed"],
        },
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {
            "type": "string",
            "description": "stable: what clients branch on (the last segment of `type`)",
            "examples": ["validation-failed"],
        },
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request's path"},
        "errors": {
            "type": "array",
            "description": "each field at fault and the rule it broke",
            "items": {"$ref": _REF + FIELD_ERROR},
        },
        "request_id": {"type": "string", "description": "as in the X-Request-ID header"},
    },
    "additionalProperties": True,
}


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI response object answered with a `Problem`."""
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF + PROBLEM}}},
    }


VALIDATION_FAILED = problem_response(
    "The input broke a rule: `errors` names each field and rule. The code is usually "
    "`validation-failed`; some are the endpoint's own (`idempotency-key-reused`, "
    "`invalid-rules`, `invalid-range`, `invalid-document`)."
)
CLIENT_ERROR = problem_response(
    "Refused: a malformed or oversized request (400, 413, 414, 415, 431), a missing or "
    "unaccepted credential (401), a role that may not (403), what does not exist or is not "
    "the caller's tenant's (404), a conflict with the current state (409), a precondition "
    "that failed (412), input that broke a rule (422, as above; any route refuses a query "
    "parameter it does not take), too many requests (429, with Retry-After)."
)
SERVER_ERROR = problem_response(
    "An unexpected failure (500, detail in the logs under `request_id`), or a dependency "
    "unavailable (503, with Retry-After)."
)


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    return _REF + "HTTPValidationError" in json.dumps(response)


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an OpenAPI document as FastAPI builds it) with problem+json errors."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    # Copies, here and below: one document's later edits must not reach another app's.
    schemas[FIELD_ERROR] = copy.deepcopy(FIELD_ERROR_SCHEMA)
    schemas[PROBLEM] = copy.deepcopy(PROBLEM_SCHEMA)
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            own_errors = "4XX" in responses
            validation = responses.get("422")
            if validation is not None and _is_fastapi_validation(validation):
                if own_errors:
                    del responses["422"]
                else:
                    responses["422"] = copy.deepcopy(VALIDATION_FAILED)
            responses.setdefault("4XX", copy.deepcopy(CLIENT_ERROR))
            responses.setdefault("5XX", copy.deepcopy(SERVER_ERROR))
    # FastAPI's validation schemas, once no operation names them (the outer one first: it
    # names the inner).
    for name in _FASTAPI_VALIDATION:
        if schema.get("components", {}).get("schemas", {}).get(name) is None:
            continue
        others = {k: v for k, v in schemas.items() if k != name}
        if _REF + name not in json.dumps({"paths": schema.get("paths"), "schemas": others}):
            del schemas[name]
    return schema


def install_problem_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `/openapi.json` and `/docs`) document problem+json.

    FastAPI's own `openapi()` keeps its cache, and builds again when routes were added
    since; each document it builds is rewritten once."""
    build: Callable[[], dict[str, Any]] = app.openapi
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = build()
        if not rewritten or rewritten[0] is not schema:
            rewritten[:] = [document_problems(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
