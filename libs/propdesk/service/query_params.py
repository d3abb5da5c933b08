"""A query parameter that takes one value must be given once.

Starlette hands an endpoint the last of repeated values, so `?limit=500&limit=1` answered
one row and `?status=open&status=closed` listed the closed cases only: the caller meant
something, and was silently answered something else. Every service app runs
`single_query_values` before its endpoints (`create_service_app`): a parameter the route
declares with a single-valued type (its dependencies' parameters and the fields of a
query model too, under every name FastAPI reads them by) that arrives twice is a 422
naming it (rule `single`). Parameters declared as lists, and ones a route reads from the
raw query itself (Open311's repeatable filters), are left alone.

Like a body JSON cannot read, this is answered before the credential is looked at: it is
about the request's shape, which the API's schema publishes, not about anyone's data.
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

from propdesk.service.problems import invalid

_CACHED = "_propdesk_single_valued_query"  # on the route: routes are not hashable
_MANY = (list, tuple, set, frozenset, Sequence, Set)


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


def _single_names(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        info = field.field_info
        if not isinstance(info, Query):
            continue
        model = _model(info)
        if model is None:
            if not takes_many(info.annotation):
                yield from _request_names(field.name, info)
            continue
        for name, model_field in model.model_fields.items():
            if not takes_many(model_field.annotation):
                yield from _request_names(name, model_field)
    for sub in dependant.dependencies:
        yield from _single_names(sub)


def single_valued(route: APIRoute) -> frozenset[str]:
    """The query keys of `route` (its dependencies' too) that take one value."""
    names: frozenset[str] | None = getattr(route, _CACHED, None)
    if names is None:
        names = frozenset(_single_names(route.dependant))
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
