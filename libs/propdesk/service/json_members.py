"""JSON bodies that give a member twice in one object are refused, not read as the last.

RFC 8259 leaves an object with a repeated name to the parser: Python's, orjson and
pydantic keep the last, other parsers the first. `{"channel": "fax", "channel": "phone"}`
was recorded as a phone call; a proxy or a log reading the first member would have seen a
fax. So a JSON body the route reads is checked once more, and a repeated member is a 422
naming it (rule `single`, as for a query parameter given twice):
`body.complainant.name: given twice in one object`.

The check parses the body again with the standard library (about 10-25 µs for a
complaint's body; FastAPI has parsed it already, and what it could not parse never gets
here) and walks the result only when a member repeated. This parse runs deeper in the
stack than FastAPI's: a body nested just short of what FastAPI could read may exhaust it,
and is refused as FastAPI refuses one nested deeper (400 `max_depth`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request

from propdesk.service.problems import (
    NESTED_TOO_DEEPLY,
    field_error,
    invalid,
    is_json_media_type,
    malformed_json,
)


class _Repeated(dict):  # type: ignore[type-arg]
    """An object in which `name` came more than once (only ever built for the error)."""

    name: str


def _path_to_repeated(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path of the first member given twice, in document order (outer objects first)."""
    if isinstance(value, _Repeated):
        return (*path, value.name)
    if isinstance(value, dict):
        for name, item in value.items():
            if (found := _path_to_repeated(item, (*path, name))) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _path_to_repeated(item, (*path, i))) is not None:
                return found
    return None


def repeated_member(raw: bytes) -> tuple[str | int, ...] | None:
    """The path (names and list indices) of a member given twice in one object of the JSON
    document `raw`, or None: none is, or `raw` is not JSON (the caller's parser says so).
    RecursionError when the document nests deeper than this parse can go."""
    repeated = False

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        repeated = True
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                break
            seen.add(name)
        marked = _Repeated(obj)
        marked.name = name
        return marked

    try:
        doc = json.loads(raw, object_pairs_hook=members)
    except ValueError:
        return None
    return _path_to_repeated(doc, ()) if repeated else None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    head = content_type[:17].lower()
    if head == "application/json" or head == "application/json;":
        return True  # the common case, without building a MIME message
    return is_json_media_type(content_type)


async def single_json_members(request: Request) -> None:
    """App-wide dependency: 422 when the JSON body the route reads repeats a member."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    if not _is_json(request.headers.get("content-type")):
        return
    raw = await request.body()
    if not raw:
        return
    try:
        path = repeated_member(raw)
    except RecursionError:
        raise malformed_json(field_error("body", "max_depth", NESTED_TOO_DEEPLY)) from None
    if path is not None:
        field = ".".join(["body", *(str(p) for p in path)])
        raise invalid(field, "single", "given twice in one object; send each member once")
