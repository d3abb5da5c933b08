"""The same administrative change arriving twice at the same moment (a retrying script, two
supervisors), on the real PostgreSQL: routing rules, roster shifts, operator-loaded
holiday years and local days.

Each race is made deterministic with `propdesk.testing.lock_waits`: the test's own
connection holds a lock the contenders need (a table lock, the row, an uncommitted row
with the same key) until every contender waits behind it, then lets them go. What must
hold whatever order they then take: never a 500; identical requests are one change; the
answers say what is stored; none of these changes sends an event."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from dispatch.testing import Tenant
from propdesk.auth.tokens import issue_token
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.lock_waits import in_turn

pytestmark = pytest.mark.asyncio(loop_scope="session")

YEAR = 2097  # no other test loads it; removed again by `year_2097`


def _limited(tenant: Tenant, role: str) -> dict[str, str]:
    """A credential of the tenant's one project only."""
    token = issue_token(
        tenant.settings,
        tenant_id=tenant.tenant_id,
        subject=str(uuid4()),
        roles=[role],
        project_ids=[tenant.project_id],
    )
    return {"authorization": f"Bearer {token}"}


def _operator(tenant_settings: Any) -> dict[str, str]:
    token = issue_token(tenant_settings, tenant_id=None, subject="op", roles=["operator"])
    return {"authorization": f"Bearer {token}"}


async def _no_events(tenant: Tenant) -> None:
    rows = await admin_fetch(
        tenant.settings,
        "SELECT event_type FROM dispatch.outbox WHERE tenant_id = $1",
        tenant.tenant_id,
    )
    assert [r["event_type"] for r in rows] == []


async def _rules(tenant: Tenant) -> list[Any]:
    return await admin_fetch(
        tenant.settings,
        "SELECT id, project_id, note, department FROM dispatch.routing_rules"
        " WHERE tenant_id = $1 ORDER BY id",
        tenant.tenant_id,
    )


# --- routing rules ---------------------------------------------------------------------


async def test_the_same_rule_posted_twice_at_once_is_one_rule(res, tenant: Tenant, client) -> None:
    """A retrying script sends its rule again while the first is still on its way: one
    rule, and both answers name it."""
    admin = tenant.token(uuid4(), "tenant_admin")
    body = {"department": "eng", "category": "noise", "priority": 5, "note": "夜间噪音"}

    def post() -> Any:
        return client.post("/v1/routing-rules", headers=admin, json=body)

    # A SHARE lock on the table lets the requests read, not insert.
    answers: list[httpx.Response] = await in_turn(
        res.settings.database_url,
        "LOCK TABLE dispatch.routing_rules IN SHARE MODE",
        (),
        [post, post],
    )
    # The first made it; the second waited for it and found it.
    assert [r.status_code for r in answers] == [201, 200], [r.text for r in answers]
    stored = await _rules(tenant)
    assert len(stored) == 1, stored
    assert {r.json()["id"] for r in answers} == {stored[0]["id"]}
    # A later retry too.
    r = await client.post("/v1/routing-rules", headers=admin, json=body)
    assert (r.status_code, r.json()["id"]) == (200, stored[0]["id"]), r.text
    # Another rule (it differs in its note) is a rule of its own.
    r = await client.post("/v1/routing-rules", headers=admin, json={**body, "note": "别的"})
    assert r.status_code == 201, r.text
    assert len(await _rules(tenant)) == 2
    await _no_events(tenant)


async def _company_rule_made_tenant_wide_while(
    res, tenant: Tenant, client, request: Any
) -> tuple[httpx.Response, int]:
    """A project rule; while a company-wide credential's change making it a rule of every
    project holds its row, a project credential's `request(rule_id)` comes."""
    director = _limited(tenant, "director")
    own = {"department": "eng", "category": "security", "project_id": str(tenant.project_id)}
    r = await client.post("/v1/routing-rules", headers=director, json=own)
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    [answer] = await in_turn(
        res.settings.database_url,
        "UPDATE dispatch.routing_rules SET project_id = NULL, note = 'everyone' WHERE id = $1",
        (rule_id,),
        [lambda: request(director, own, rule_id)],
    )
    return answer, rule_id


async def test_a_project_credential_does_not_change_a_rule_made_every_projects_meanwhile(
    res, tenant: Tenant, client
) -> None:
    """The project's director changes his rule while the company makes it a rule of every
    project: his change comes second, to a rule he may not change (403, as it would be a
    moment later), and the rule stays every project's. It used to be a 200 turning the
    company's rule back into his project's."""

    def put(headers: dict, body: dict, rule_id: int) -> Any:
        return client.put(
            f"/v1/routing-rules/{rule_id}", headers=headers, json={**body, "note": "mine"}
        )

    answer, rule_id = await _company_rule_made_tenant_wide_while(res, tenant, client, put)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "tenant-wide-scope-required"
    [stored] = await _rules(tenant)
    assert (stored["id"], stored["project_id"], stored["note"]) == (rule_id, None, "everyone")


async def test_a_project_credential_deleting_a_rule_made_every_projects_meanwhile_is_a_403(
    res, tenant: Tenant, client
) -> None:
    """The same with a deletion: the rule is not deleted (the database's policy refuses
    it), and the answer says why rather than that there is no such rule (it used to be a
    404 for a rule he still sees)."""

    def delete(headers: dict, body: dict, rule_id: int) -> Any:
        return client.delete(f"/v1/routing-rules/{rule_id}", headers=headers)

    answer, rule_id = await _company_rule_made_tenant_wide_while(res, tenant, client, delete)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "tenant-wide-scope-required"
    assert [r["id"] for r in await _rules(tenant)] == [rule_id]


async def test_two_changes_of_one_rule_at_once_apply_one_after_the_other(
    res, tenant: Tenant, client
) -> None:
    """Two supervisors change one rule at once: both apply, in turn (a PUT replaces the
    rule), each answer is the rule as that change left it, and the rule is the second's."""
    admin = tenant.token(uuid4(), "tenant_admin")
    body = {"department": "eng", "category": "parking"}
    rule_id = (await client.post("/v1/routing-rules", headers=admin, json=body)).json()["id"]

    def put(note: str) -> Any:
        return lambda: client.put(
            f"/v1/routing-rules/{rule_id}", headers=admin, json={**body, "note": note}
        )

    answers = await in_turn(
        res.settings.database_url,
        "SELECT 1 FROM dispatch.routing_rules WHERE id = $1 FOR UPDATE",
        (rule_id,),
        [put("first"), put("second")],
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert [r.json()["note"] for r in answers] == ["first", "second"]
    [stored] = await _rules(tenant)
    assert stored["note"] == "second"
    await _no_events(tenant)


@pytest.mark.parametrize("first", ["put", "delete"])
async def test_a_change_and_a_deletion_of_one_rule_at_once(
    res, tenant: Tenant, client, first: str
) -> None:
    """A change and a deletion (or two deletions) at once: whichever comes second sees
    what the first left: a change after the deletion is a 404, a deletion after the
    change deletes it, a second deletion is a 404. Never a 500, nothing left half done."""
    admin = tenant.token(uuid4(), "tenant_admin")
    body = {"department": "eng", "category": "fees"}
    rule_id = (await client.post("/v1/routing-rules", headers=admin, json=body)).json()["id"]
    url = f"/v1/routing-rules/{rule_id}"

    def put() -> Any:
        return client.put(url, headers=admin, json={**body, "note": "changed"})

    def delete() -> Any:
        return client.delete(url, headers=admin)

    contenders = [put, delete] if first == "put" else [delete, put]
    answers = await in_turn(
        res.settings.database_url,
        "SELECT 1 FROM dispatch.routing_rules WHERE id = $1 FOR UPDATE",
        (rule_id,),
        [*contenders, delete],
    )
    codes = [r.status_code for r in answers]
    assert codes == ([200, 204, 404] if first == "put" else [204, 404, 404]), [
        r.text for r in answers
    ]
    assert all(
        r.json()["code"] == "routing-rule-not-found" for r in answers if r.status_code == 404
    )
    assert await _rules(tenant) == []
    await _no_events(tenant)


# --- roster shifts -----------------------------------------------------------------------


def _shift(tenant: Tenant, staff_id: UUID, starts: str, ends: str) -> dict[str, str]:
    return {
        "staff_id": str(staff_id),
        "project_id": str(tenant.project_id),
        "starts_at": starts,
        "ends_at": ends,
    }


async def test_two_overlapping_shifts_of_one_person_at_once_store_one(
    res, tenant: Tenant, client
) -> None:
    """Two supervisors roster the duty leader over overlapping hours at once: the
    per-person lock (held here) queues them, the second is a 409 naming the first's
    shift, and one shift is stored."""
    head = tenant.token(uuid4(), "cs_supervisor")
    bodies = [
        _shift(
            tenant, tenant.duty_leader, "2026-12-08T18:00:00+08:00", "2026-12-09T08:30:00+08:00"
        ),
        _shift(
            tenant, tenant.duty_leader, "2026-12-09T06:00:00+08:00", "2026-12-09T12:00:00+08:00"
        ),
    ]
    answers = await in_turn(
        res.settings.database_url,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        (f"dispatch.roster:{tenant.project_id}:{tenant.duty_leader}",),
        [lambda b=b: client.post("/v1/rosters/shifts", headers=head, json=b) for b in bodies],
    )
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    [made] = [r.json() for r in answers if r.status_code == 201]
    [refused] = [r.json() for r in answers if r.status_code == 409]
    assert refused["code"] == "shift-overlap" and refused["overlapping_shift_id"] == made["id"]
    stored = await admin_fetch(
        tenant.settings,
        "SELECT id FROM dispatch.roster_shifts WHERE tenant_id = $1",
        tenant.tenant_id,
    )
    assert [r["id"] for r in stored] == [made["id"]]
    await _no_events(tenant)


# --- holiday years and local days -----------------------------------------------------


@pytest.fixture
async def year_2097(res):
    yield YEAR
    await admin_fetch(
        res.settings, "DELETE FROM dispatch.platform_calendar_years WHERE year = $1", YEAR
    )


@pytest.mark.parametrize("same", [True, False])
async def test_one_year_loaded_twice_at_once(res, tenant: Tenant, client, year_2097, same) -> None:
    """Two operators load the same year at once: both succeed, the year is one of the two
    loads as a whole (never a mix), and an identical load is simply the year."""
    op = _operator(res.settings)
    first = {"holidays": {f"{YEAR}-01-01": "元旦"}, "workdays": {}, "source": "a"}
    second = (
        first
        if same
        else {
            "holidays": {f"{YEAR}-01-01": "元旦", f"{YEAR}-05-01": "劳动节"},
            "workdays": {f"{YEAR}-04-27": "调休"},
            "source": "b",
        }
    )
    answers = await in_turn(
        res.settings.database_url,
        "INSERT INTO dispatch.platform_calendar_years (year, holidays, workdays, loaded_by)"
        " VALUES ($1, '{}', '{}', 'holder')",
        (YEAR,),
        [
            lambda b=b: client.put(f"/v1/calendars/years/{YEAR}", headers=op, json=b)
            for b in (first, second)
        ],
        release="ROLLBACK",
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    [row] = await admin_fetch(
        res.settings,
        "SELECT holidays::text AS h, workdays::text AS w, source FROM"
        " dispatch.platform_calendar_years WHERE year = $1",
        YEAR,
    )
    stored = {
        "holidays": json.loads(row["h"]),
        "workdays": json.loads(row["w"]),
        "source": row["source"],
    }
    assert stored in (first, second)


@pytest.mark.parametrize("tenant_wide", [False, True])
async def test_one_local_day_set_twice_at_once(
    res, tenant: Tenant, client, tenant_wide: bool
) -> None:
    """Two admins set the same day at once: both succeed, one row for the day, which is
    one of the two."""
    admin = tenant.token(uuid4(), "tenant_admin")
    url = f"/v1/calendars/{tenant.project_id}/days/2027-03-05"
    bodies = [
        {"kind": "holiday", "name": "停水", "tenant_wide": tenant_wide},
        {"kind": "workday", "name": "补班", "tenant_wide": tenant_wide},
    ]
    project = None if tenant_wide else tenant.project_id
    answers = await in_turn(
        res.settings.database_url,
        "INSERT INTO dispatch.calendar_days (tenant_id, project_id, day, kind)"
        " VALUES ($1, $2, '2027-03-05', 'holiday')",
        (tenant.tenant_id, project),
        [lambda b=b: client.put(url, headers=admin, json=b) for b in bodies],
        release="ROLLBACK",
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    rows = await admin_fetch(
        tenant.settings,
        "SELECT project_id, kind, name FROM dispatch.calendar_days WHERE tenant_id = $1",
        tenant.tenant_id,
    )
    assert len(rows) == 1 and rows[0]["project_id"] == project
    assert {"kind": rows[0]["kind"], "name": rows[0]["name"]} in [
        {"kind": b["kind"], "name": b["name"]} for b in bodies
    ]
    await _no_events(tenant)
