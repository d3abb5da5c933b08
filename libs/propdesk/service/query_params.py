"""A query parameter that takes one value must be given once.

Starlette hands an endpoint the last of repeated values, so `?limit=500&limit=1` answered
one row and `?status=open&status=closed` listed the closed cases only: the caller meant
something, and was silently answered something else. Every service app runs
`single_query_values` before its endpoints (`create_service_app`): a parameter the route
declares with a single-valued type and that arrives twice is a 422 naming it (rule
`single`). Parameters declared as lists, and ones a route reads from the raw query itself
(Open311's repeatable filters), are left alone.
"""

from __future__ import annotations

from fastapi._compat.shared import field_annotation_is_sequence
from fastapi.dependencies.utils import get_flat_params
from fastapi.params import Query
from fastapi.routing import APIRoute
from starlette.requests import Request

from propdesk.service.problems import invalid

_CACHED = "_propdesk_single_valued_query"  # on the route: routes are not hashable


def single_valued(route: APIRoute) -> frozenset[str]:
    """The query parameters of `route` (its dependencies' too) that take one value."""
    names: frozenset[str] | None = getattr(route, _CACHED, None)
    if names is None:
        names = frozenset(
            field.alias
            for field in get_flat_params(route.dependant)
            if isinstance(field.field_info, Query)
            and not field_annotation_is_sequence(field.field_info.annotation)
        )
        setattr(route, _CACHED, names)
    return names


async def single_query_values(request: Request) -> None:
    """422 when a single-valued query parameter of the matched route comes twice."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    names = single_valued(route)
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in names:
            continue
        if name in seen:
            raise invalid(
                f"query.{name}",
                "single",
                "give this parameter once; it takes one value",
            )
        seen.add(name)
