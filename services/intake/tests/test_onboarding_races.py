"""The same administrative change sent twice at the same moment, as a retrying script or two
operators send it, on the real PostgreSQL: onboarding (the API and `propdesk onboard`), the
tenant's rules, API keys.

Each race is made deterministic by holding, from another connection, the lock the
contenders meet (the company's onboarding lock, the tenant's row, the key's row) until all
of them wait behind it, then letting them go in the order they queued. Whatever happened:
no 500, each caller's answer says what it did (one of two identical requests changed
something, the other found it done), one outbox event per real change, and what is stored
is what the last one to apply asked for."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from propdesk.auth.tokens import issue_token
from propdesk.service.resources import ServiceResources
from propdesk.testing import lock_waits

from .conftest import COMPANY, Company, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")

ONBOARDING_LOCK = "SELECT pg_advisory_xact_lock(hashtext('onb:' || $1::text))"
TENANT_ROW = "SELECT 1 FROM intake.tenants WHERE id = $1 FOR UPDATE"
KEY_ROW = "SELECT 1 FROM intake.api_keys WHERE id = $1 FOR UPDATE"


def _code() -> str:
    return f"RC{uuid4().hex[:6].upper()}"


def _document(code: str) -> str:
    return COMPANY.format(code=code, name="并发物业")


def _changed(code: str) -> str:
    """The company again with a new project, a department renamed and a new staff member."""
    return (
        _document(code)
        .replace(
            "departments:",
            "  - {code: STAR, name: 星河湾, city: 广州, time_zone: Asia/Shanghai, calendar: cn,\n"
            '     buildings: [{code: "9", units: ["901"]}]}\n'
            "departments:",
        )
        .replace("name: 工程部,", "name: 工程维修部,")
        .replace(
            "routing:",
            "  - {code: S002, name: 李强, roles: [cs_supervisor], projects: [STAR]}\nrouting:",
        )
    )


def _operator(res: ServiceResources) -> dict[str, str]:
    token = issue_token(res.settings, tenant_id=None, subject="op-race", roles=["operator"])
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}


async def in_turn(res: ServiceResources, lock_sql: str, arg: Any, contenders: list) -> list[Any]:
    return await lock_waits.in_turn(res.settings.database_url, lock_sql, [arg], contenders)


def _post(client, res: ServiceResources, doc: str):
    async def post():
        return await client.post("/v1/onboarding", content=doc.encode(), headers=_operator(res))

    return post


async def _events(db_rows, tenant_id: UUID | str) -> list[tuple[str, dict]]:
    rows = await db_rows(
        "SELECT event_type, envelope->'payload' AS p FROM intake.outbox"
        " WHERE tenant_id = $1::uuid ORDER BY id",
        str(tenant_id),
    )
    return [(r["event_type"], json.loads(r["p"])) for r in rows]


def _reports(answers: list[Any]) -> list[dict[str, Any]]:
    for r in answers:
        assert r.status_code == 200, r.text
    return [r.json() for r in answers]


# --- POST /v1/onboarding ------------------------------------------------------------------


async def test_a_new_company_posted_twice_at_once_is_created_once(
    client, resources, db_rows
) -> None:
    code = _code()
    doc = _document(code)
    first, second = _reports(
        await in_turn(resources, ONBOARDING_LOCK, code, [_post(client, resources, doc)] * 2)
    )
    assert first["tenant_id"] == second["tenant_id"]
    assert f"tenant:{code}" in first["created"] and first["changed"] == []
    assert second["created"] == [] and second["changed"] == []
    assert sorted(second["unchanged"]) == sorted(first["created"])
    events = await _events(db_rows, first["tenant_id"])
    assert Counter(t for t, _ in events) == {
        "tenant.upserted": 1,
        "project.upserted": 2,
        "department.upserted": 2,
        "staff.upserted": 1,
        "tenant.routing_upserted": 1,
    }
    [n] = await db_rows("SELECT count(*) AS n FROM intake.tenants WHERE code = $1", code)
    assert n["n"] == 1


async def test_a_changing_rerun_posted_twice_at_once_changes_once(
    client, resources, db_rows
) -> None:
    code = _code()
    company = await onboard(resources, code, "并发物业")
    before = len(await _events(db_rows, company.tenant_id))
    doc = _changed(code)
    first, second = _reports(
        await in_turn(resources, ONBOARDING_LOCK, code, [_post(client, resources, doc)] * 2)
    )
    assert sorted(first["created"]) == sorted(
        ["project:STAR", "building:STAR/9", "unit:STAR/9/901", "staff:S002"]
    )
    assert first["changed"] == ["department:eng"]
    assert second["created"] == [] and second["changed"] == []
    events = (await _events(db_rows, company.tenant_id))[before:]
    assert [(t, p.get("code") or p.get("name")) for t, p in events] == [
        ("project.upserted", "STAR"),
        ("department.upserted", "eng"),
        ("staff.upserted", "李强"),
    ]


async def test_two_documents_for_one_company_at_once_apply_one_after_the_other(
    client, resources, db_rows
) -> None:
    code = _code()
    company = await onboard(resources, code, "并发物业")
    before = len(await _events(db_rows, company.tenant_id))
    base = _document(code)
    doc_a = base.replace("name: 工程部,", "name: 工程一部,").replace(
        "departments:",
        "  - {code: PA, name: 甲园, time_zone: Asia/Shanghai, calendar: cn}\ndepartments:",
    )
    doc_b = base.replace("name: 工程部,", "name: 工程二部,").replace(
        "departments:",
        "  - {code: PB, name: 乙园, time_zone: Asia/Shanghai, calendar: cn}\ndepartments:",
    )
    a, b = _reports(
        await in_turn(
            resources,
            ONBOARDING_LOCK,
            code,
            [_post(client, resources, doc_a), _post(client, resources, doc_b)],
        )
    )
    assert (a["created"], a["changed"]) == (["project:PA"], ["department:eng"])
    assert (b["created"], b["changed"]) == (["project:PB"], ["department:eng"])
    events = (await _events(db_rows, company.tenant_id))[before:]
    assert [(t, p.get("code"), p.get("name")) for t, p in events] == [
        ("project.upserted", "PA", "甲园"),
        ("department.upserted", "eng", "工程一部"),
        ("project.upserted", "PB", "乙园"),
        ("department.upserted", "eng", "工程二部"),
    ]
    [dept] = await db_rows(
        "SELECT name FROM intake.departments WHERE tenant_id = $1 AND code = 'eng'",
        company.tenant_id,
    )
    assert dept["name"] == "工程二部"
    projects = await db_rows(
        "SELECT code FROM intake.projects WHERE tenant_id = $1 ORDER BY code", company.tenant_id
    )
    assert [p["code"] for p in projects] == ["MOON", "PA", "PB", "SUNRISE"]


# --- propdesk onboard FILE ------------------------------------------------------------------


async def test_the_cli_run_twice_at_once_onboards_once(
    tmp_path: Path, intake_settings, resources, db_rows
) -> None:
    """Two `propdesk onboard` processes (the CLI applies the document as the API does, in
    its own process and connection)."""
    code = _code()
    f = tmp_path / "company.yaml"
    f.write_text(_document(code), encoding="utf-8")
    env = {**os.environ, "PROPDESK_DATABASE_URL": intake_settings.database_url}

    def run():
        async def cli() -> tuple[int, bytes, bytes]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "intake.cli",
                "onboard",
                str(f),
                "--json",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out, err

        return cli

    answers = await in_turn(resources, ONBOARDING_LOCK, code, [run(), run()])
    for status, _, err in answers:
        assert status == 0, err.decode()
    first, second = (json.loads(out) for _, out, _ in answers)
    assert f"tenant:{code}" in first["created"]
    assert second["created"] == [] and second["changed"] == []
    events = await _events(db_rows, first["tenant_id"])
    assert len(events) == 7, events


# --- PUT /v1/rules --------------------------------------------------------------------------


@pytest.fixture
async def company(resources) -> Company:
    return await onboard(resources, _code(), "并发物业")


def _put(client, company: Company, rules: dict[str, Any], subject: str):
    async def put():
        return await client.put(
            "/v1/rules", json=rules, headers=company.token("tenant_admin", subject=subject)
        )

    return put


async def test_the_same_rules_put_twice_at_once_are_one_change(
    client, resources, company, db_rows
) -> None:
    rules = {"duplicate_window_hours": 24}
    answers = await in_turn(
        resources,
        TENANT_ROW,
        company.tenant_id,
        [_put(client, company, rules, "admin-1"), _put(client, company, rules, "admin-2")],
    )
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["overrides"] == rules
    changes = await db_rows(
        "SELECT actor, previous, rules FROM intake.rules_changes WHERE tenant_id = $1",
        company.tenant_id,
    )
    assert [(c["actor"], json.loads(c["previous"])) for c in changes] == [("admin-1", {})]


async def test_two_rule_sets_put_at_once_are_recorded_one_after_the_other(
    client, resources, company, db_rows
) -> None:
    one, two = {"duplicate_window_hours": 24}, {"group_window_hours": 48}
    answers = await in_turn(
        resources,
        TENANT_ROW,
        company.tenant_id,
        [_put(client, company, one, "admin-1"), _put(client, company, two, "admin-2")],
    )
    assert [r.status_code for r in answers] == [200, 200]
    changes = await db_rows(
        "SELECT actor, previous, rules FROM intake.rules_changes WHERE tenant_id = $1 ORDER BY id",
        company.tenant_id,
    )
    assert [(c["actor"], json.loads(c["previous"]), json.loads(c["rules"])) for c in changes] == [
        ("admin-1", {}, one),
        ("admin-2", one, two),
    ]
    [row] = await db_rows("SELECT rules FROM intake.tenants WHERE id = $1", company.tenant_id)
    assert json.loads(row["rules"]) == two


async def test_rules_put_while_a_document_sets_the_same_rules_are_changed_once(
    client, resources, company, db_rows
) -> None:
    """An admin puts rules while an operator re-runs the company's document carrying the
    same rules. The onboarding read the tenant before the rules committed and wrote them
    again after: it answered `changed` and sent a tenant.upserted for a tenant that no
    longer differed from its document."""
    rules = {"duplicate_window_hours": 24}
    before = len(await _events(db_rows, company.tenant_id))
    doc = _document(company.code).replace(
        "settings: {}}", "settings: {}, rules: {duplicate_window_hours: 24}}"
    )
    put, posted = await in_turn(
        resources,
        TENANT_ROW,
        company.tenant_id,
        [_put(client, company, rules, "admin-1"), _post(client, resources, doc)],
    )
    assert put.status_code == 200, put.text
    [report] = _reports([posted])
    assert report["changed"] == [] and report["created"] == [], report
    assert (await _events(db_rows, company.tenant_id))[before:] == []


# --- /v1/api-keys ---------------------------------------------------------------------------


async def test_a_key_created_twice_at_once_is_two_keys(client, company) -> None:
    admin = company.token("tenant_admin")
    answers = await asyncio.gather(
        *(client.post("/v1/api-keys", json={"name": "cc"}, headers=admin) for _ in range(2))
    )
    assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
    assert answers[0].json()["id"] != answers[1].json()["id"]
    listed = await client.get("/v1/api-keys", headers=admin)
    assert {k["id"] for k in listed.json()["items"]} >= {r.json()["id"] for r in answers}


async def test_a_key_revoked_twice_at_once_is_revoked_once(
    client, resources, company, db_rows
) -> None:
    admin = company.token("tenant_admin")
    created = await client.post("/v1/api-keys", json={"name": "cc"}, headers=admin)
    assert created.status_code == 201, created.text
    key_id = created.json()["id"]

    async def revoke():
        return await client.delete(f"/v1/api-keys/{key_id}", headers=admin)

    first, second = await in_turn(resources, KEY_ROW, UUID(key_id), [revoke, revoke])
    assert first.status_code == 204, first.text
    assert second.status_code == 404, second.text
    assert second.json()["code"] == "api-key-not-found"
    [row] = await db_rows("SELECT revoked_at FROM intake.api_keys WHERE id = $1::uuid", key_id)
    assert row["revoked_at"] is not None
