"""Instants and booleans of the APIs (propdesk.service.input_types): ISO 8601 with a UTC
offset and never a Unix time, JSON true/false and never "yes"; each refusal a pydantic error
whose type is the rule the problem+json 422 shows, the OpenAPI types unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from propdesk.service import create_service_app
from propdesk.service.input_types import (
    JSON_INT as JSON_INT_CHECK,
)
from propdesk.service.input_types import (
    JSON_NUMBER as JSON_NUMBER_CHECK,
)
from propdesk.service.input_types import (
    Instant,
    Iso8601,
    JsonBool,
    JsonInt,
    JsonNumber,
    QueryBool,
)
from propdesk.service.problems import PROBLEM_CONTENT_TYPE
from propdesk.settings import Settings
from propdesk.testing.asgi_client import asgi_client

SHANGHAI = timezone(timedelta(hours=8))

# What pydantic's lax mode read as a Unix time (seconds, milliseconds, as text too), and
# other things that are not an ISO 8601 date-time.
NOT_INSTANTS = [
    1764300000,
    1764300000000,
    1764300000.5,
    -1,
    0,
    True,
    "1764300000",
    "1764300000000",
    "1764300000.5",
    " 1764300000",
    "20261127",
    "",
    "yesterday",
    "now",
    b"2026-11-27T09:30:00+08:00",
    [2026, 11, 27],
    {"at": "2026-11-27T09:30:00+08:00"},
]
NOT_JSON_BOOLS = ["yes", "no", "on", "off", "1", "0", "t", "f", "y", "n", "true", 1, 0, 1.0, None]


def error_types(adapter: TypeAdapter[Any], value: Any, *, json: bool = False) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        if json:
            adapter.validate_json(value)
        else:
            adapter.validate_python(value)
    return [e["type"] for e in caught.value.errors()]


INSTANT = TypeAdapter(Instant)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T09:30:00+08:00", datetime(2026, 11, 27, 9, 30, tzinfo=SHANGHAI)),
        ("2026-11-27T01:30:00Z", datetime(2026, 11, 27, 1, 30, tzinfo=UTC)),
        ("2026-11-27 09:30:00.250+08:00", datetime(2026, 11, 27, 9, 30, 0, 250000, SHANGHAI)),
        ("2026-11-27t01:30z", datetime(2026, 11, 27, 1, 30, tzinfo=UTC)),
    ],
)
def test_an_instant_is_iso8601_text_with_an_offset(text: str, expected: datetime) -> None:
    for value in (INSTANT.validate_python(text), INSTANT.validate_json(f'"{text}"')):
        assert value == expected
        assert value.utcoffset() == expected.utcoffset()  # its offset is kept


def test_an_instant_may_be_an_aware_datetime_from_python() -> None:
    at = datetime(2026, 11, 27, 9, 30, tzinfo=SHANGHAI)
    assert INSTANT.validate_python(at) is at


@pytest.mark.parametrize("value", NOT_INSTANTS, ids=repr)
def test_a_number_or_other_text_is_not_an_instant(value: Any) -> None:
    assert error_types(INSTANT, value) == ["iso8601"]
    with pytest.raises(ValidationError) as caught:
        INSTANT.validate_python(value)
    message = caught.value.errors()[0]["msg"]
    assert "ISO 8601" in message and "UTC offset" in message and "number" in message


@pytest.mark.parametrize(
    "raw", ["1764300000", "1764300000000", "1.7643e9", "true", '"1764300000"', '"20261127"']
)
def test_a_number_in_json_is_not_an_instant(raw: str) -> None:
    assert error_types(INSTANT, raw, json=True) == ["iso8601"]


@pytest.mark.parametrize(
    "value",
    ["2026-11-27T09:30:00", "2026-11-27 09:30", "2026-11-27", datetime(2026, 11, 27, 9, 30)],
    ids=repr,
)
def test_an_instant_without_an_offset_keeps_its_rule(value: Any) -> None:
    assert error_types(INSTANT, value) == ["timezone_required"]


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00Z", "2026-11-27T25:00:00+08:00"])
def test_a_date_time_pydantic_cannot_read_keeps_its_rule(text: str) -> None:
    [rule] = error_types(INSTANT, text)
    assert rule.startswith("datetime_") or rule.startswith("date_from_datetime"), rule


def test_iso8601_leaves_the_missing_offset_to_the_type_it_is_put_on() -> None:
    aware = TypeAdapter(Annotated[AwareDatetime, Iso8601])
    assert error_types(aware, "2026-11-27T09:30:00") == ["timezone_aware"]
    assert error_types(aware, 1764300000) == ["iso8601"]
    assert error_types(aware, "1764300000") == ["iso8601"]
    assert aware.validate_python("2026-11-27T01:30:00Z") == datetime(
        2026, 11, 27, 1, 30, tzinfo=UTC
    )
    plain = TypeAdapter(Annotated[datetime, Iso8601])
    assert plain.validate_python("2026-11-27T09:30:00") == datetime(2026, 11, 27, 9, 30)
    assert error_types(plain, 1764300000) == ["iso8601"]


JSON_BOOL = TypeAdapter(JsonBool)


def test_a_json_bool_is_true_or_false() -> None:
    assert JSON_BOOL.validate_json("true") is True
    assert JSON_BOOL.validate_json("false") is False
    assert JSON_BOOL.validate_python(True) is True
    assert JSON_BOOL.validate_python(False) is False


@pytest.mark.parametrize("value", NOT_JSON_BOOLS, ids=repr)
def test_nothing_else_is_a_json_bool(value: Any) -> None:
    assert error_types(JSON_BOOL, value) == ["bool_type"]
    assert error_types(JSON_BOOL, json.dumps(value), json=True) == ["bool_type"]


QUERY_BOOL = TypeAdapter(QueryBool)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("false", False), ("True", True), ("FALSE", False), (True, True)],
)
def test_a_query_bool_is_the_text_true_or_false(text: Any, expected: bool) -> None:
    assert QUERY_BOOL.validate_python(text) is expected


@pytest.mark.parametrize(
    "value", ["yes", "no", "on", "off", "1", "0", "t", "f", "", " true", "truthy", 1, 0, None]
)
def test_nothing_else_is_a_query_bool(value: Any) -> None:
    assert error_types(QUERY_BOOL, value) == ["bool_parsing"]


JSON_INT = TypeAdapter(JsonInt)
JSON_NUMBER = TypeAdapter(JsonNumber)


def test_a_json_integer_is_a_number_without_a_fraction() -> None:
    assert JSON_INT.validate_python(72) == 72
    assert JSON_INT.validate_python(72.0) == 72
    assert JSON_INT.validate_json("-3") == -3
    assert error_types(JSON_INT, 72.5) == ["int_from_float"]


@pytest.mark.parametrize("value", [True, False, "72", " 72", "7.2e1", None, [72]], ids=repr)
def test_nothing_else_is_a_json_integer(value: Any) -> None:
    assert error_types(JSON_INT, value) == ["int_type"]


def test_a_json_number_is_an_integer_or_a_float() -> None:
    assert JSON_NUMBER.validate_python(31) == 31.0
    assert JSON_NUMBER.validate_json("31.25") == 31.25


@pytest.mark.parametrize("value", [True, "31.2", "nan", None, {"lat": 31}], ids=repr)
def test_nothing_else_is_a_json_number(value: Any) -> None:
    assert error_types(JSON_NUMBER, value) == ["float_type"]


def test_bounds_before_the_json_check_stay_on_the_numbers_schema() -> None:
    latitude = TypeAdapter(
        Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), JSON_NUMBER_CHECK]
    )
    assert latitude.json_schema() == {"type": "number", "minimum": -90, "maximum": 90}
    assert error_types(latitude, float("nan")) == ["finite_number"]
    assert error_types(latitude, "31.2") == ["float_type"]
    priority = TypeAdapter(Annotated[int, Field(ge=-1000, le=1000), JSON_INT_CHECK])
    assert priority.json_schema() == {"type": "integer", "minimum": -1000, "maximum": 1000}
    assert error_types(priority, True) == ["int_type"]
    assert error_types(priority, 1001) == ["less_than_equal"]


def test_the_schemas_keep_their_types() -> None:
    assert INSTANT.json_schema() == {"type": "string", "format": "date-time"}
    assert JSON_BOOL.json_schema() == {"type": "boolean"}
    assert QUERY_BOOL.json_schema() == {"type": "boolean"}
    assert JSON_INT.json_schema() == {"type": "integer"}
    assert JSON_NUMBER.json_schema() == {"type": "number"}


# Through a service app: the pydantic error type is the problem's `rule`, on the field.

router = APIRouter()


class Visit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: Instant
    until: Instant | None = None
    site_visit: JsonBool = False


@router.post("/visits")
async def post_visit(visit: Visit) -> dict[str, Any]:
    return visit.model_dump(mode="json")


@router.get("/visits")
async def list_visits(
    since: Instant | None = None, include_closed: QueryBool = False
) -> dict[str, Any]:
    return {"since": since.isoformat() if since else None, "include_closed": include_closed}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = Settings(log_json=True)
    return create_service_app("testsvc", settings=settings, routers=[router], configure_logs=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


def problem_errors(resp: httpx.Response) -> list[tuple[str, str]]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = resp.json()
    assert problem["code"] == "validation-failed"
    assert all(e["message"] for e in problem["errors"])
    return [(e["field"], e["rule"]) for e in problem["errors"]]


async def test_refusals_are_problems_naming_the_field_and_rule(client: httpx.AsyncClient) -> None:
    good = {"at": "2026-11-27T09:30:00+08:00"}
    r = await client.post("/visits", json={"at": 1764300000, "site_visit": "yes"})
    assert problem_errors(r) == [("body.at", "iso8601"), ("body.site_visit", "bool_type")]
    r = await client.post("/visits", json={**good, "until": "2026-11-27T10:00:00"})
    assert problem_errors(r) == [("body.until", "timezone_required")]
    r = await client.get("/visits", params={"since": "1764300000", "include_closed": "yes"})
    assert problem_errors(r) == [
        ("query.since", "iso8601"),
        ("query.include_closed", "bool_parsing"),
    ]

    r = await client.post("/visits", json={**good, "site_visit": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"at": "2026-11-27T09:30:00+08:00", "until": None, "site_visit": True}
    r = await client.get(
        "/visits", params={"since": "2026-11-27T01:30:00Z", "include_closed": "true"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"since": "2026-11-27T01:30:00+00:00", "include_closed": True}


async def test_openapi_shows_date_times_and_booleans(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    spec = r.json()
    visit = spec["components"]["schemas"]["Visit"]["properties"]
    assert visit["at"]["type"] == "string" and visit["at"]["format"] == "date-time"
    assert {"type": "string", "format": "date-time"} in visit["until"]["anyOf"]
    assert visit["site_visit"]["type"] == "boolean"
    params = {p["name"]: p["schema"] for p in spec["paths"]["/visits"]["get"]["parameters"]}
    assert {"type": "string", "format": "date-time"} in params["since"]["anyOf"]
    assert params["include_closed"]["type"] == "boolean"
