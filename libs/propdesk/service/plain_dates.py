"""A day in the API is `YYYY-MM-DD` and nothing more.

Pydantic alone takes a midnight date-time for a date (`2026-11-01T00:00:00+08:00`, its
time and offset dropped) and a number as a Unix timestamp (`1762905600`): neither is the
local day a caller means. `plain_date` is the before-validator the services put on their
days; it refuses anything else with rule `date_parsing`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic_core import PydanticCustomError

_PLAIN_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def plain_date(value: Any) -> date:
    """`value` as a day: a date (not a date-time), or its `YYYY-MM-DD` text."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _PLAIN_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError(
        "date_parsing", "Input should be a valid date in the format YYYY-MM-DD"
    )
