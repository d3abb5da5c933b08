"""Bad input to reporting's API: each a precise 422 naming the field and the rule, never
a 200 that read the request as something else."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest

from propdesk.auth.tokens import issue_token
from propdesk.service.resources import ServiceResources

from .conftest import get_activity

# 2026-11-27 17:00 UTC: the default `to` (the latest date anywhere) is 2026-11-28.
NOW = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)


async def _get(res: ServiceResources, params: list[tuple[str, str]], token: str | None = None):
    token = token or issue_token(
        res.settings, tenant_id=uuid4(), subject="s", roles=["cs_supervisor"]
    )
    return await get_activity(res, token, params, now=NOW)


def _errors(resp: httpx.Response) -> list[tuple[str, str]]:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return [(e["field"], e["rule"]) for e in resp.json()["errors"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        # Pydantic alone read these as dates: a midnight date-time lost its time and offset,
        # a number was a Unix timestamp (1762905600 is 2025-11-12).
        ([("from", "2026-11-01T00:00:00Z")], "query.from"),
        ([("from", "2026-11-01T00:00:00+08:00")], "query.from"),
        ([("from", "2026-11-01T00:00")], "query.from"),
        ([("from", "1762905600")], "query.from"),
        ([("from", "2026-11-01"), ("to", "1764201600.0")], "query.to"),
        ([("to", "20261128")], "query.to"),
        ([("from", "2026-02-30")], "query.from"),
        ([("from", "")], "query.from"),
        ([("from", "2026-11-01\x00")], "query.from"),
        ([("from", "9" * 5000)], "query.from"),
    ],
)
async def test_a_day_is_yyyy_mm_dd_and_nothing_else(res, params, field):
    resp = await _get(res, params)
    assert resp.status_code == 422, resp.text
    assert _errors(resp) == [(field, "date_parsing")]


@pytest.mark.parametrize(
    "params",
    [
        # `project_id` is the name of the rows' field: it answered every project.
        [("project_id", str(uuid4()))],
        [("form", "2026-11-01")],  # a typo: answered the default 30 days
        [("FROM", "2026-11-01"), ("to", "2026-11-28")],
        [("from", "2026-11-01"), ("day", "2026-11-02")],
    ],
)
async def test_a_query_parameter_the_endpoint_does_not_take_is_named(res, params):
    resp = await _get(res, params)
    assert resp.status_code == 422, resp.text
    unknown = params[0][0] if params[0][0] not in ("from", "to") else params[1][0]
    assert _errors(resp) == [(f"query.{unknown}", "extra_forbidden")]
    assert "from, project, to" in resp.json()["errors"][0]["message"]


async def test_every_unknown_parameter_is_named_once(res):
    resp = await _get(res, [("a", "1"), ("b", "2"), ("a", "3"), ("project", str(uuid4()))])
    assert resp.status_code == 422
    assert _errors(resp) == [("query.a", "extra_forbidden"), ("query.b", "extra_forbidden")]


@pytest.mark.parametrize(
    ("params", "field", "rule", "in_detail"),
    [
        # `to` is the default (today, 2026-11-28): the range is too long because of `from`,
        # the one field the caller sent; once the problem named `query.to`.
        ([("from", "2000-01-01")], "query.from", "max_days", "default: today, 2026-11-28"),
        ([("from", "2100-12-01")], "query.from", "before_or_equal_to", "default: today"),
        ([("from", "2020-01-01"), ("to", "2026-01-01")], "query.to", "max_days", "2192 days"),
        ([("from", "2026-12-01"), ("to", "2026-11-01")], "query.from", "before_or_equal_to", ""),
    ],
)
async def test_a_bad_range_names_a_field_the_caller_sent(res, params, field, rule, in_detail):
    resp = await _get(res, params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid-range"
    assert _errors(resp) == [(field, rule)]
    assert in_detail in resp.json()["detail"]


async def test_the_days_and_project_asked_for_are_answered(res):
    params = [("from", "2026-11-01"), ("to", "2026-11-28"), ("project", str(uuid4()))]
    resp = await _get(res, params)
    assert resp.status_code == 200, resp.text
    assert resp.json() == []
    # Out of the calendar still says which bound, with the day.
    resp = await _get(res, [("from", "1999-12-31"), ("to", "2000-01-02")])
    assert resp.status_code == 422
    assert _errors(resp) == [("query.from", "greater_than_equal")]
    assert "2000-01-01" in resp.json()["errors"][0]["message"]
