"""Hostile and odd input to the dispatch API (real PostgreSQL): what a probe of every route
found accepted that should not be. Each is a precise 4xx naming the field and the rule,
and nothing is stored:

- a hand-over to the order's current owner (the owner chain said "from X to X");
- a routing rule naming a handler outside the rule's department or project (dispatch
  ignored him without a word; the rule's other new refusals are in
  test_dispatch_api_bad_input.py);
- text that is only whitespace where text is required (a reason, a note, a resolution);
- unbounded strings inside lists and objects (photo references, decisions, a
  compensation's currency and amount) and an empty or endless department code;
- working-hour periods that do not parse named a prose sentence as their `rule`;
- a roster shift overlapping one the same person already has in the project (there is no
  endpoint to remove one, so a duplicate stayed for good), also when two arrive at once;
- a holiday year loaded empty (it counted as covered) or named by a loose number.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from dispatch.testing import Tenant, apply_directory, engineering_order
from propdesk.auth.tokens import issue_token
from propdesk.events.contracts.tenant import DepartmentUpserted, ProjectUpserted, StaffUpserted
from propdesk.service.resources import ServiceResources
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.lock_waits import in_turn

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def seed_others(res: ServiceResources, t: Tenant) -> tuple[UUID, UUID]:
    """A member of the seeded project's service center, and an engineer (department code
    `eng`, kind engineering) of a second project of the same tenant."""
    cs_clerk, other_project, other_eng, other_engineer = uuid4(), uuid4(), uuid4(), uuid4()
    payloads = [
        StaffUpserted(
            staff_id=cs_clerk,
            project_ids=[t.project_id],
            department_id=t.service_center,
            name="吴客服",
            roles=["handler"],
        ),
        ProjectUpserted(
            project_id=other_project, code="P2", name="滨江苑", time_zone="Asia/Shanghai"
        ),
        DepartmentUpserted(
            department_id=other_eng,
            project_id=other_project,
            code="eng2",
            name="工程部",
            kind="engineering",
        ),
        StaffUpserted(
            staff_id=other_engineer,
            project_ids=[other_project],
            department_id=other_eng,
            name="孙工",
            roles=["handler"],
        ),
    ]
    await apply_directory(res, t, payloads)
    return cs_clerk, other_engineer


def _fields(r) -> list[tuple[str, str]]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


# ── hand-over ───────────────────────────────────────────────────────────────────────────


async def test_a_hand_over_to_the_current_owner_is_refused(res, tenant: Tenant, client) -> None:
    url, engineer = await engineering_order(res, tenant)
    h = tenant.handler(engineer)
    assert (await client.post(f"{url}/accept", headers=h)).status_code == 200
    body = {"to_staff_id": str(engineer), "reason": "交给自己"}
    for headers in (h, tenant.token(tenant.head, "department_head")):
        r = await client.post(f"{url}/hand-over", headers=headers, json=body)
        assert r.status_code == 422, r.text
        assert _fields(r) == [("body.to_staff_id", "not_owner")]
    view = (await client.get(url, headers=h)).json()
    assert view["state"] == "accepted" and view["pending_handover_to"] is None
    assert [o["kind"] for o in view["owners"]] == ["first_receiver"]


# ── routing rules ───────────────────────────────────────────────────────────────────────


async def test_a_rules_handler_is_of_the_rules_department_and_project(
    res, tenant: Tenant, client
) -> None:
    cs_clerk, other_project_engineer = await seed_others(res, tenant)
    admin = tenant.token(uuid4(), "tenant_admin")
    base = {"department": "eng", "category": "noise", "project_id": str(tenant.project_id)}
    for handler, rule in (
        (tenant.duty_leader, "in_department"),  # no department at all
        (cs_clerk, "in_department"),  # the service center's
        (other_project_engineer, "covers_project"),  # engineering, another project
    ):
        r = await client.post(
            "/v1/routing-rules", headers=admin, json={**base, "handler_staff_id": str(handler)}
        )
        assert r.status_code == 422, r.text
        assert ("body.handler_staff_id", rule) in _fields(r)
    assert (await client.get("/v1/routing-rules", headers=admin)).json()["count"] == 0
    # A rule for every project naming a department kind: an engineer of any project fits.
    r = await client.post(
        "/v1/routing-rules",
        headers=admin,
        json={
            "department": "engineering",
            "category": "noise",
            "handler_staff_id": str(other_project_engineer),
        },
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/routing-rules", headers=admin, json={**base, "handler_staff_id": str(tenant.handler_a)}
    )
    assert r.status_code == 201, r.text


# ── text ────────────────────────────────────────────────────────────────────────────────


async def test_whitespace_is_no_reason_note_or_resolution(res, tenant: Tenant, client) -> None:
    url, engineer = await engineering_order(res, tenant)
    h = tenant.handler(engineer)
    r = await client.post(f"{url}/reject", headers=h, json={"reason": " \t\n "})
    assert r.status_code == 422 and _fields(r) == [("body.reason", "string_too_short")], r.text
    assert (await client.post(f"{url}/accept", headers=h)).status_code == 200
    r = await client.post(f"{url}/progress", headers=h, json={"note": "   "})
    assert r.status_code == 422 and _fields(r) == [("body.note", "string_too_short")], r.text
    r = await client.post(f"{url}/resolve", headers=h, json={"resolution": "\u3000 "})
    assert r.status_code == 422 and _fields(r) == [("body.resolution", "string_too_short")]
    view = (await client.get(url, headers=h)).json()
    assert view["state"] == "accepted" and [s["action"] for s in view["steps"]] == [
        "dispatch",
        "accept",
    ]


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        ("progress", {"note": "x", "photo_refs": [""]}, "body.photo_refs.0", "string_too_short"),
        (
            "progress",
            {"note": "x", "photo_refs": ["p" * 501]},
            "body.photo_refs.0",
            "string_too_long",
        ),
        ("resolve", {"resolution": "x", "decisions": [""]}, "body.decisions.0", "string_too_short"),
        ("resolve", {"resolution": "x", "decisions": ["d"] * 51}, "body.decisions", "too_long"),
        (
            "resolve",
            {"resolution": "x", "decisions": ["d" * 4001]},
            "body.decisions.0",
            "string_too_long",
        ),
        (
            "resolve",
            {
                "resolution": "x",
                "compensation": {"amount": "1", "description": "x", "currency": ""},
            },
            "body.compensation.currency",
            "string_pattern_mismatch",
        ),
        (
            "resolve",
            {
                "resolution": "x",
                "compensation": {"amount": "1", "description": "x", "currency": "X" * 40},
            },
            "body.compensation.currency",
            "string_pattern_mismatch",
        ),
        (
            "resolve",
            {"resolution": "x", "compensation": {"amount": "9" * 40, "description": "x"}},
            "body.compensation.amount",
            "string_pattern_mismatch",
        ),
        (
            "reassign",
            {"department_code": "", "reason": "x"},
            "body.department_code",
            "string_too_short",
        ),
        (
            "reassign",
            {"department_code": "d" * 101, "reason": "x"},
            "body.department_code",
            "string_too_long",
        ),
    ],
)
async def test_strings_inside_lists_and_objects_have_limits(
    res, tenant: Tenant, client, path: str, body: dict, field: str, rule: str
) -> None:
    url, _ = await engineering_order(res, tenant)
    director = tenant.token(uuid4(), "director")
    assert (await client.post(f"{url}/accept", headers=director)).status_code == 200
    r = await client.post(f"{url}/{path}", headers=director, json=body)
    assert r.status_code == 422, r.text
    assert _fields(r) == [(field, rule)]
    view = (await client.get(url, headers=director)).json()
    assert view["state"] == "accepted" and len(view["steps"]) == 2


# ── calendars and rosters ───────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "periods",
    [
        ["8-17"],
        ["17:00-08:00"],
        ["08:00-12:00", "11:00-17:00"],
        # Read as a time with a UTC offset, then compared with one without: a 500.
        ["08:00-05:00-12:00"],
        ["0800-1200"],
    ],
)
async def test_working_periods_that_do_not_parse_name_a_machine_readable_rule(
    tenant: Tenant, client, periods: list[str]
) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.put(
        f"/v1/calendars/{tenant.project_id}/hours", headers=admin, json={"periods": periods}
    )
    assert r.status_code == 422, r.text
    assert _fields(r) == [("body.periods", "format")]


async def test_a_round_the_clock_project_has_working_hours_to_24_00(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    r = await client.put(
        f"/v1/calendars/{tenant.project_id}/hours",
        headers=admin,
        json={
            "periods": ["00:00-24:00"],
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
            "observe_public_holidays": False,  # so "now" is working time on any date
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["hours"]["periods"] == ["00:00-24:00"]
    read = (await client.get(f"/v1/calendars/{tenant.project_id}", headers=admin)).json()
    assert read["hours"]["periods"] == ["00:00-24:00"]
    assert read["now"]["working_time"] is True


def _shift(tenant: Tenant, starts: str, ends: str) -> dict[str, str]:
    return {
        "staff_id": str(tenant.duty_leader),
        "project_id": str(tenant.project_id),
        "starts_at": starts,
        "ends_at": ends,
    }


async def test_a_shift_overlapping_the_same_persons_shift_is_a_409(tenant: Tenant, client) -> None:
    admin = tenant.token(uuid4(), "tenant_admin")
    first = _shift(tenant, "2026-11-24T18:00:00+08:00", "2026-11-25T08:30:00+08:00")
    r = await client.post("/v1/rosters/shifts", headers=admin, json=first)
    assert r.status_code == 201, r.text
    shift_id = r.json()["id"]
    for starts, ends in (
        (first["starts_at"], first["ends_at"]),  # the same shift again
        ("2026-11-25T08:00:00+08:00", "2026-11-25T12:00:00+08:00"),  # its last half hour
        ("2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"),  # inside it, in UTC
    ):
        r = await client.post(
            "/v1/rosters/shifts", headers=admin, json=_shift(tenant, starts, ends)
        )
        assert r.status_code == 409, r.text
        problem = r.json()
        assert problem["code"] == "shift-overlap" and problem["overlapping_shift_id"] == shift_id
        assert _fields(r) == [("body.starts_at", "no_overlap")]
    # The next shift may start when this one ends; another person's may overlap it.
    nxt = _shift(tenant, "2026-11-25T08:30:00+08:00", "2026-11-25T18:00:00+08:00")
    assert (await client.post("/v1/rosters/shifts", headers=admin, json=nxt)).status_code == 201
    other = {**first, "staff_id": str(tenant.handler_a)}
    assert (await client.post("/v1/rosters/shifts", headers=admin, json=other)).status_code == 201


async def test_two_overlapping_shifts_at_once_store_one(res, tenant: Tenant, client) -> None:
    """The race made certain: the inserts are held back (a SHARE lock on the table lets the
    overlap checks run, not the inserts) until all four requests wait, so without the
    per-person lock every check would find nothing and all four would be stored."""
    admin = tenant.token(uuid4(), "tenant_admin")
    body = _shift(tenant, "2026-12-01T18:00:00+08:00", "2026-12-02T08:30:00+08:00")
    # Counted only behind this lock: the first request's insert waits on it, the other
    # three on the first's per-person lock.
    answers = await in_turn(
        res.settings.database_url,
        "LOCK TABLE dispatch.roster_shifts IN SHARE MODE",
        (),
        [lambda: client.post("/v1/rosters/shifts", headers=admin, json=body)] * 4,
        release="ROLLBACK",
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]


# ── holiday years ───────────────────────────────────────────────────────────────────────


async def test_a_year_loaded_without_holidays_or_by_a_loose_number_is_refused(res, client) -> None:
    op = {
        "authorization": "Bearer "
        + issue_token(res.settings, tenant_id=None, subject="op", roles=["operator"])
    }
    # Empty, it would count as covered and silence the warning that it is not.
    r = await client.put("/v1/calendars/years/2098", headers=op, json={"holidays": {}})
    assert r.status_code == 422 and _fields(r) == [("body.holidays", "too_short")], r.text
    good = {"holidays": {"2098-01-01": "元旦"}}
    for loose in ("2098.0", "+2098", "٢٠٩٨"):
        r = await client.put(f"/v1/calendars/years/{loose}", headers=op, json=good)
        assert r.status_code == 422, (loose, r.text)
        assert _fields(r) == [("path.year", "int_parsing")], (loose, r.text)
    stored = await admin_fetch(
        res.settings, "SELECT count(*) AS n FROM dispatch.platform_calendar_years WHERE year = 2098"
    )
    assert stored[0]["n"] == 0
