"""Instants, booleans and numbers every propdesk API takes: what the API says, and nothing
pydantic would guess instead.

Pydantic's lax mode reads a number as a Unix time (`1764300000`, in seconds; `1764300000000`,
in milliseconds; the string `"1764300000"` too) where the API promises ISO 8601 with a UTC
offset, reads `"yes"`, `"on"`, `"1"`, `1`, `0`, `"f"` ... as booleans where a JSON body
has `true` and `false`, and `true` or `"72"` as numbers. The caller meant something, and
was silently answered something else. These types refuse them with a 422 naming the field
(propdesk.service.problems turns pydantic's error type into the `rule`):

- `Instant`: an aware datetime, given as an ISO 8601 string with a UTC offset
  (`2026-11-27T09:30:00+08:00`, `...Z`), or a datetime object (Python callers). A number,
  a numeric string or text not starting as a date (`YYYY-MM-DD`) is rule `iso8601` (text
  that starts so and does not parse is pydantic's `datetime_parsing`); a time without a
  UTC offset is rule `timezone_required`. Body fields and query parameters alike.
- `Iso8601`: the first half of `Instant` alone, as Annotated metadata for any datetime
  type (`Instant` is `Annotated[datetime, Iso8601, <offset required>]`).
- `JsonBool`: a JSON body's boolean: `true` or `false` (a Python bool), nothing else;
  rule `bool_type`.
- `JsonInt`: a JSON body's integer: a JSON number without a fraction (`72`, `72.0`), not
  `true` (pydantic's lax mode reads it as 1) nor the text `"72"`; rule `int_type`.
- `JsonNumber`: a JSON body's number (`31.2`, `31`), not `true` nor the text `"31.2"`;
  rule `float_type`.
- `QueryBool`: a query parameter's boolean: the text `true` or `false` (in any letter case:
  Python's `requests` sends `True`), nothing else; rule `bool_parsing`.

Each keeps its type in the OpenAPI schema (`string`/`date-time`, `boolean`). Values are
returned as given (an instant keeps its offset): a request's stored hash does not change.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

ISO8601_RULE = "iso8601"
ISO8601_MESSAGE = (
    "Input should be an ISO 8601 date and time with a UTC offset, such as "
    "2026-11-27T09:30:00+08:00 or 2026-11-27T01:30:00Z; a number is not read as a time"
)
TIMEZONE_RULE = "timezone_required"
TIMEZONE_MESSAGE = "must include a UTC offset"
JSON_BOOL_RULE = "bool_type"
JSON_BOOL_MESSAGE = "Input should be a JSON boolean: true or false"
JSON_INT_RULE = "int_type"
JSON_INT_MESSAGE = "Input should be a JSON integer, not text or a boolean"
JSON_NUMBER_RULE = "float_type"
JSON_NUMBER_MESSAGE = "Input should be a JSON number, not text or a boolean"
QUERY_BOOL_RULE = "bool_parsing"
QUERY_BOOL_MESSAGE = "Input should be true or false"

# An ISO 8601 date-time starts with its calendar date; what follows (the time, the offset)
# is pydantic's to read. Numbers (a Unix time) never start so.
_STARTS_WITH_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ]|\Z)")
_QUERY_BOOLS = {"true": True, "false": False}


def iso8601_text(value: Any) -> Any:
    """The before-validator behind `Iso8601`: a datetime, or text shaped as an ISO 8601
    date-time, passes on to pydantic's parsing; anything else is rule `iso8601`."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _STARTS_WITH_DATE.match(value):
        return value
    raise PydanticCustomError(ISO8601_RULE, ISO8601_MESSAGE)


def require_offset(value: datetime) -> datetime:
    """The after-validator behind `Instant`: a datetime without a UTC offset is rule
    `timezone_required`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(TIMEZONE_RULE, TIMEZONE_MESSAGE)
    return value


def json_bool(value: Any) -> bool:
    """The before-validator behind `JsonBool`: only a bool; rule `bool_type`."""
    if isinstance(value, bool):
        return value
    raise PydanticCustomError(JSON_BOOL_RULE, JSON_BOOL_MESSAGE)


def json_int(value: Any) -> Any:
    """The before-validator behind `JsonInt`: a number (pydantic then refuses a fraction,
    rule `int_from_float`); a bool or text is rule `int_type`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise PydanticCustomError(JSON_INT_RULE, JSON_INT_MESSAGE)


def json_number(value: Any) -> Any:
    """The before-validator behind `JsonNumber`: an int or a float; a bool or text is rule
    `float_type`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise PydanticCustomError(JSON_NUMBER_RULE, JSON_NUMBER_MESSAGE)


def query_bool(value: Any) -> bool:
    """The before-validator behind `QueryBool`: a bool, or the text true/false in any
    letter case; rule `bool_parsing`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = _QUERY_BOOLS.get(value.lower())
        if found is not None:
            return found
    raise PydanticCustomError(QUERY_BOOL_RULE, QUERY_BOOL_MESSAGE)


# Annotated metadata for any datetime type: ISO 8601 text (or a datetime), never a number.
Iso8601 = BeforeValidator(iso8601_text)
Instant = Annotated[datetime, Iso8601, AfterValidator(require_offset)]
JsonBool = Annotated[bool, BeforeValidator(json_bool)]
# As Annotated metadata after a number's bounds, so the bounds stay on the number's own
# schema (OpenAPI `minimum`/`maximum`, `allow_inf_nan`): Annotated[int, Field(ge=1), JSON_INT].
# Bounds given after it (a field's `Field(ge=...)` on `JsonInt`) would be checked, but
# published as pydantic's own `ge`/`le` keywords, and `allow_inf_nan` lost.
JSON_INT = BeforeValidator(json_int)
JSON_NUMBER = BeforeValidator(json_number)
JsonInt = Annotated[int, JSON_INT]
JsonNumber = Annotated[float, JSON_NUMBER]
QueryBool = Annotated[bool, BeforeValidator(query_bool)]
