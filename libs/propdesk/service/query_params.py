"""Query parameters: each one the route takes, and a single-valued one once.

Starlette hands an endpoint the last of repeated values, so `?limit=500&limit=1` answered
one row and `?status=open&status=closed` listed the closed cases only; and a parameter the
route does not take is dropped, so `?project_id=` (a row's field name, where the filter is
`project`) listed every project. The caller meant something, and was silently answered
something else. Every service app runs `checked_query` before its endpoints
(`create_service_app`), against what the matched route declares (its dependencies'
parameters and the fields of a query model too, under every name FastAPI reads them by):

- a parameter the route does not take is a 422 naming it (rule `extra_forbidden`, as
  pydantic names an unknown body field), unless the route reads its query itself and says
  so (`READS_RAW_QUERY` in its `openapi_extra`: Open311's, whose spec lets clients send
  filters the route reads from the raw query);
- a single-valued one that arrives twice is a 422 naming it (rule `single`); parameters
  declared as lists may repeat.

Like a body JSON cannot read, this is answered before the credential is looked at: it is
about the request's shape, which the API's schema publishes, not about anyone's data.

What the route declares is read from the route object itself (and kept on it): a query
parameter that only a dependency given to `include_router(..., dependencies=...)` or a
`dependency_overrides` replacement reads is not seen, and would be refused. The services
include their routers without dependencies and override none in production; a route that
needs either can say `READS_RAW_QUERY`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence, Set
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi.dependencies.models import Dependant
from fastapi.params import Query
from fastapi.routing import APIRoute
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from starlette.requests import Request

from propdesk.service.problems import ProblemError, field_error, invalid

_CACHED = "_propdesk_query_names"  # on the route: routes are not hashable
# `openapi_extra` of a route that reads query parameters it does not declare.
RAW_QUERY_EXTENSION = "x-propdesk-reads-raw-query"
READS_RAW_QUERY = {RAW_QUERY_EXTENSION: True}
_MANY = (list, tuple, set, frozenset, Sequence, Set)
# Where what a client put in the query belongs (Open311's habit, taken to the native API).
_MISPLACED = {
    "api_key": " (an API key goes in the X-API-Key header; only Open311 reads it here)",
    "access_token": " (a token goes in the Authorization header: Bearer <token>)",
}


def takes_many(annotation: Any) -> bool:
    """Whether a parameter of this type takes repeated values (a list, a set, ...), also
    inside Optional, a union or Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return takes_many(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(takes_many(a) for a in get_args(annotation) if a is not type(None))
    target = origin or annotation
    return (
        isinstance(target, type)
        and issubclass(target, _MANY)
        and not issubclass(target, (str, bytes))  # sequences of characters; StrEnums too
    )


def _request_names(name: str, info: FieldInfo) -> Iterator[str]:
    """The query keys FastAPI reads a parameter from."""
    va = info.validation_alias
    if isinstance(va, str):
        yield va
    elif isinstance(va, AliasChoices):
        yield from (c for c in va.choices if isinstance(c, str))
    else:
        yield info.alias or name


def _model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _query_names(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """(request key, takes one value) of every query parameter `dependant` reads."""
    for field in dependant.query_params:
        info = field.field_info
        if not isinstance(info, Query):
            continue
        model = _model(info)
        if model is None:
            one = not takes_many(info.annotation)
            yield from ((name, one) for name in _request_names(field.name, info))
            continue
        for name, model_field in model.model_fields.items():
            one = not takes_many(model_field.annotation)
            yield from ((key, one) for key in _request_names(name, model_field))
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def query_names(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """The query keys `route` takes (its dependencies' too), and those of them that take
    one value."""
    names: tuple[frozenset[str], frozenset[str]] | None = getattr(route, _CACHED, None)
    if names is None:
        found = list(_query_names(route.dependant))
        names = (
            frozenset(name for name, _ in found),
            frozenset(name for name, one in found if one),
        )
        setattr(route, _CACHED, names)
    return names


async def checked_query(request: Request) -> None:
    """422 when the query holds a parameter the matched route does not take, or a
    single-valued one twice."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken, single = query_names(route)
    given = [name for name, _ in request.query_params.multi_items()]
    if not (route.openapi_extra or {}).get(RAW_QUERY_EXTENSION):
        # (`?=1` names nothing: it is `query.` with an empty name, as the query has it.)
        unknown = list(dict.fromkeys(name for name in given if name not in taken))
        if unknown:
            takes = ", ".join(sorted(taken)) or "no query parameters"
            raise ProblemError(
                422,
                "Request validation failed",
                code="validation-failed",
                detail=f"Unknown query parameter {', '.join(unknown)}: this endpoint takes "
                f"{takes}.",
                errors=[
                    field_error(
                        f"query.{name}",
                        "extra_forbidden",
                        f"unknown; takes {takes}{_MISPLACED.get(name, '')}",
                    )
                    for name in unknown
                ],
            )
    seen: set[str] = set()
    for name in given:
        if name not in single:
            continue
        if name in seen:
            raise invalid(
                f"query.{name}",
                "single",
                "give this parameter once; it takes one value",
            )
        seen.add(name)
