"""Onboarding: the document parser (pure) and applying it to the real database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from intake.onboarding.document import DocumentError, parse_document

from .conftest import admin_fetch

GOOD = """\
tenant: {code: DEMO, name: 示范物业有限公司, settings: {}}
projects:
  - {code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{code: "1", name: 1号楼, units: ["101", "102"]}]}
departments:
  - {code: cs, name: 客服部, kind: customer_service, project: SUNRISE}
staff:
  - {code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}
routing: []
"""


def test_the_documented_shape_parses():
    doc = parse_document(GOOD)
    assert doc.tenant.code == "DEMO"
    assert doc.projects[0].buildings[0].units == ["101", "102"]
    assert doc.staff[0].roles == ["intake_clerk"]


def test_demo_company_file_parses_if_present():
    path = Path(__file__).resolve().parents[3] / "deploy" / "demo" / "company.yaml"
    if not path.exists():
        pytest.skip("deploy/demo/company.yaml not written yet")
    parse_document(path.read_bytes())


@pytest.mark.parametrize(
    ("source", "line", "field", "rule"),
    [
        (
            GOOD.replace("time_zone: Asia/Shanghai", "time_zone: Mars/Olympus"),
            3,
            "projects[0].time_zone",
            "value_error",
        ),
        (GOOD.replace("roles: [intake_clerk]", "roles: [janitor]"), 8, "staff[0].roles[0]", "enum"),
        (
            GOOD.replace("project: SUNRISE}", "project: NOPE}"),
            6,
            "departments[0].project",
            "reference",
        ),
        (
            GOOD.replace("department: cs,", "department: eng,"),
            8,
            "staff[0].department",
            "reference",
        ),
        (GOOD.replace("name: 客服部, ", ""), 6, "departments[0].name", "missing"),
        (GOOD.replace("routing: []", "routing: {}"), 9, "routing", "list_type"),
        (GOOD + "colour: red\n", 10, "colour", "extra_forbidden"),
        (
            GOOD.replace("units: [", "units: [[1], "),
            4,
            "projects[0].buildings[0].units[0]",
            "string_type",
        ),
        (GOOD.replace("settings: {}}", "settings: {}"), 2, "document", "yaml"),
        # A project is named by code or by id: a code that reads as a UUID is ambiguous.
        (
            GOOD.replace("code: SUNRISE,", "code: 0123456789abcdef0123456789abcdef,").replace(
                "project: SUNRISE}", "project: 0123456789abcdef0123456789abcdef}"
            ),
            3,
            "projects[0].code",
            "project_code_like_uuid",
        ),
        # Routing entries: values dispatch knows, and codes this document lists.
        (
            GOOD.replace("routing: []", "routing:\n  - {category: plumbing, department: cs}"),
            10,
            "routing[0].category",
            "enum",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {grade: urgent, department: cs}"),
            10,
            "routing[0].grade",
            "enum",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {department: cs, handler_role: boss}"),
            10,
            "routing[0].handler_role",
            "enum",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {category: fees, department: finance}"),
            10,
            "routing[0].department",
            "reference",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {department: cs, project: MOON}"),
            10,
            "routing[0].project",
            "reference",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {department: cs, handler_staff: S404}"),
            10,
            "routing[0].handler_staff",
            "reference",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {department: cs, inform: [quality]}"),
            10,
            "routing[0].inform[0]",
            "reference",
        ),
        (
            GOOD.replace("routing: []", "routing:\n  - {department: cs, handler_staff_id: x}"),
            10,
            "routing[0].handler_staff_id",
            "extra_forbidden",
        ),
        (
            # A boolean or a number given as text (quoted): pydantic would read them.
            GOOD.replace("projects: [SUNRISE]}", 'projects: [SUNRISE], active: "no"}'),
            8,
            "staff[0].active",
            "bool_type",
        ),
        (
            GOOD.replace("routing: []", 'routing:\n  - {department: cs, priority: "5"}'),
            10,
            "routing[0].priority",
            "int_type",
        ),
        (
            # A number given as text: pydantic would read "48" as 48.
            GOOD.replace("settings: {}}", 'settings: {}, rules: {group_window_hours: "48"}}'),
            1,
            "tenant.rules.group_window_hours",
            "int_type",
        ),
    ],
)
def test_a_bad_file_names_the_line_and_field(source, line, field, rule):
    with pytest.raises(DocumentError) as info:
        parse_document(source)
    issues = info.value.issues
    assert any(i.field == field for i in issues) or field == "document", issues
    issue = next(i for i in issues if i.field == field)
    assert issue.rule == rule, issue
    assert issue.line == line, issue


pytestmark_db = pytest.mark.asyncio(loop_scope="session")


@pytestmark_db
async def test_onboarding_is_idempotent_and_reports_changes(resources, db_rows):
    from intake.onboarding.apply import apply_document

    source = GOOD.replace("DEMO", "IDEM")
    first = await apply_document(resources.sessions, parse_document(source), actor="t")
    assert "tenant:IDEM" in first.created and "unit:SUNRISE/1/102" in first.created
    assert first.changed == [] and first.unchanged == []
    events = await db_rows(
        "SELECT event_type FROM intake.outbox WHERE tenant_id = $1 ORDER BY id", first.tenant_id
    )
    assert [e["event_type"] for e in events] == [
        "tenant.upserted",
        "project.upserted",
        "department.upserted",
        "staff.upserted",
    ]

    again = await apply_document(resources.sessions, parse_document(source), actor="t")
    assert again.tenant_id == first.tenant_id
    assert again.created == [] and again.changed == []
    assert sorted(again.unchanged) == sorted(first.created)
    after = await db_rows(
        "SELECT count(*) AS n FROM intake.outbox WHERE tenant_id = $1", first.tenant_id
    )
    assert after[0]["n"] == len(events)  # nothing new to tell anyone

    changed = source.replace("王敏", "王敏敏").replace('"102"]', '"102", "103"]')
    third = await apply_document(resources.sessions, parse_document(changed), actor="t")
    assert third.changed == ["staff:S001"]
    assert third.created == ["unit:SUNRISE/1/103"]
    staff_events = await db_rows(
        "SELECT envelope->'payload'->>'name' AS name FROM intake.outbox"
        " WHERE tenant_id = $1 AND event_type = 'staff.upserted' ORDER BY id",
        first.tenant_id,
    )
    assert [e["name"] for e in staff_events] == ["王敏", "王敏敏"]


ROUTED = GOOD.replace(
    "routing: []",
    """routing:
  - {category: facility_repair, department: customer_service, project: SUNRISE,
     handler_staff: S001, inform: [cs], priority: 5, note: 前台先接}""",
)


def test_routing_entries_name_departments_by_code_or_kind():
    doc = parse_document(ROUTED)
    assert doc.routing[0].as_stored() == {
        "department": "customer_service",
        "category": "facility_repair",
        "project": "SUNRISE",
        "handler_staff": "S001",
        "inform": ["cs"],
        "priority": 5,
        "note": "前台先接",
    }


@pytestmark_db
async def test_routing_is_sent_after_the_directory_it_names(resources, db_rows):
    """Dispatch resolves a rule's project code against the projects it has been told of:
    the rules must follow the project events (a project-bound rule sent first was dropped),
    and name the staff member by the id dispatch knows."""
    from intake.onboarding.apply import apply_document

    report = await apply_document(
        resources.sessions, parse_document(ROUTED.replace("DEMO", "ROUTE")), actor="t"
    )
    events = await db_rows(
        "SELECT event_type, envelope->'payload' AS payload FROM intake.outbox"
        " WHERE tenant_id = $1 ORDER BY id",
        report.tenant_id,
    )
    assert [e["event_type"] for e in events] == [
        "tenant.upserted",
        "project.upserted",
        "department.upserted",
        "staff.upserted",
        "tenant.routing_upserted",
    ]
    staff_id = json.loads(events[3]["payload"])["staff_id"]
    hints = json.loads(events[4]["payload"])["hints"]
    assert hints == [
        {
            "department": "customer_service",
            "category": "facility_repair",
            "project": "SUNRISE",
            "handler_staff_id": staff_id,
            "inform": ["cs"],
            "priority": 5,
            "note": "前台先接",
        }
    ]
    again = await apply_document(
        resources.sessions, parse_document(ROUTED.replace("DEMO", "ROUTE")), actor="t"
    )
    assert "tenant:ROUTE" in again.unchanged  # the stored entries compare equal
    # Their order is not noise: dispatch breaks ties between rules by it.
    reordered = ROUTED.replace("DEMO", "ROUTE").replace(
        "routing:\n", "routing:\n  - {category: fees, department: cs}\n"
    )
    third = await apply_document(resources.sessions, parse_document(reordered), actor="t")
    fourth_doc = (
        reordered.replace("  - {category: fees, department: cs}\n", "").rstrip("\n")
        + "\n  - {category: fees, department: cs}\n"
    )
    fourth = await apply_document(resources.sessions, parse_document(fourth_doc), actor="t")
    assert "tenant:ROUTE" in third.changed and "tenant:ROUTE" in fourth.changed
    sent = await db_rows(
        "SELECT envelope->'payload'->'hints' AS hints FROM intake.outbox"
        " WHERE tenant_id = $1 AND event_type = 'tenant.routing_upserted' ORDER BY id",
        report.tenant_id,
    )
    assert [json.loads(r["hints"])[0]["category"] for r in sent] == [
        "facility_repair",
        "fees",
        "facility_repair",
    ]


@pytestmark_db
async def test_onboarding_api_rights(client, company_a, company_b):
    admin_a = company_a.token("tenant_admin")
    doc_b = GOOD.replace("DEMO", company_b.code)
    r = await client.post("/v1/onboarding", content=doc_b.encode(), headers=admin_a)
    assert r.status_code == 403
    bad = await client.post(
        "/v1/onboarding",
        content=GOOD.replace("Asia/Shanghai", "Nowhere").encode(),
        headers=admin_a,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "projects[0].time_zone"
    assert bad.json()["errors"][0]["line"] == 3
    clerk = await client.post(
        "/v1/onboarding", content=doc_b.encode(), headers=company_a.token("intake_clerk")
    )
    assert clerk.status_code == 403


@pytestmark_db
async def test_operator_onboards_a_new_company_over_the_api(client, resources):
    from propdesk.auth.tokens import issue_token

    token = issue_token(resources.settings, tenant_id=None, subject="op", roles=["operator"])
    r = await client.post(
        "/v1/onboarding",
        content=GOOD.replace("DEMO", "OPNEW").encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["created"] == 7


def test_cli_onboard_and_token(tmp_path, intake_settings, monkeypatch, capsys):
    import json

    from intake.cli import main
    from propdesk.settings import get_settings

    monkeypatch.setenv("PROPDESK_DATABASE_URL", intake_settings.database_url)
    get_settings.cache_clear()
    try:
        f = tmp_path / "c.yaml"
        f.write_text(GOOD.replace("DEMO", "CLICO"), encoding="utf-8")
        assert main(["onboard", str(f), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["counts"]["created"] == 7
        assert main(["onboard", str(f), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["counts"]["unchanged"] == 7
        bad = tmp_path / "bad.yaml"
        bad.write_text(GOOD.replace("project: SUNRISE}", "project: NOPE}"), encoding="utf-8")
        assert main(["onboard", str(bad)]) == 2
        assert f"{bad}:6: departments[0].project" in capsys.readouterr().err
        assert (
            main(["apikey", "create", "--tenant", "CLICO", "--project", "SUNRISE", "--json"]) == 0
        )
        key = json.loads(capsys.readouterr().out)
        assert key["key"].startswith("pdk_") and len(key["project_ids"]) == 1
        assert main(["token", "--tenant", "CLICO", "--role", "cs_supervisor", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["roles"] == ["cs_supervisor"]
        assert main(["token", "--tenant", "NOPE", "--role", "cs_supervisor"]) == 2
    finally:
        get_settings.cache_clear()


@pytest.mark.asyncio(loop_scope="session")
async def test_cli_onboarding_tells_running_intake_processes_to_drop_the_tenant(
    tmp_path, intake_settings, monkeypatch
):
    """A running intake process's directory cache (here: one connected to NATS, as the
    service connects it) drops the tenant when `propdesk onboard` changes it."""
    from uuid import UUID

    from intake import directory_cache
    from intake.cli import main
    from propdesk.bus.streams import connect
    from propdesk.db.scoped_cache import ScopedCache
    from propdesk.settings import get_settings
    from propdesk.testing.waiting import eventually

    monkeypatch.setenv("PROPDESK_DATABASE_URL", intake_settings.database_url)
    monkeypatch.setenv("PROPDESK_NATS_URL", intake_settings.nats_url)
    get_settings.cache_clear()
    running = ScopedCache(directory_cache.CACHE.name, ttl=directory_cache.TTL_SECONDS)
    nc = await connect(intake_settings, "intake-under-test")
    try:
        await running.connect(nc)
        f = tmp_path / "c.yaml"
        f.write_text(GOOD.replace("DEMO", "CACHECO"), encoding="utf-8")
        assert await asyncio.to_thread(main, ["onboard", str(f), "--json"]) == 0
        [row] = await admin_fetch(
            intake_settings, "SELECT id FROM intake.tenants WHERE code = 'CACHECO'"
        )
        tenant: UUID = row["id"]
        running.put(tenant, "units", "before the change")
        f.write_text(GOOD.replace("DEMO", "CACHECO").replace("阳光", "朝阳"), encoding="utf-8")
        assert await asyncio.to_thread(main, ["onboard", str(f), "--json"]) == 0

        async def dropped() -> bool:
            return running.get(tenant, "units") == (False, None)

        await eventually(dropped, "the running cache dropping the onboarded tenant", within=5)
    finally:
        await nc.close()
        get_settings.cache_clear()


async def test_the_cli_announcer_gives_up_at_once_when_nats_is_unreachable(intake_settings, capsys):
    """`propdesk onboard` and `propdesk apikey revoke` announce their changes on NATS; with
    NATS down they warn and carry on (the intake processes see the change when their
    entries expire). nats-py, told not to reconnect, still went round the servers for
    ever (or 120 s before this connection's settings)."""
    import time

    from intake import directory_cache
    from intake.cli import _announcer
    from propdesk.devstack.ports import free_port

    down = intake_settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    nc = await asyncio.wait_for(_announcer(down, directory_cache.CACHE, 30.0), 30)
    assert nc is None and time.monotonic() - started < 10
    assert "NATS unreachable" in capsys.readouterr().err


def _aliases_within(depth: int) -> str:
    # Each anchor nests 20 levels around the one before: 40 of them stand for 800 levels.
    return "".join(
        f"a{i}: &a{i} " + "[" * 20 + (f"*a{i - 1}" if i else "1") + "]" * 20 + "\n"
        for i in range(depth)
    )


def _billion_laughs(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("source", "rule", "line"),
    [
        ("tenant: " + "[" * 5000 + "]" * 5000, "max_depth", 1),
        ('{"tenant": ' + "[" * 5000 + "]" * 5000 + "}", "max_depth", 1),
        ('{"tenant": ' + "[" * 100_000 + "]" * 100_000 + "}", "max_depth", 1),
        ("tenant:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(200)), "max_depth", 32),
        ("tenant: {code: DEMO, name: x}\n" + _aliases_within(40), "max_depth", 3),
        ("tenant: &t {code: DEMO, name: x, settings: {again: *t}}", "max_depth", 1),
        ("tenant: {code: DEMO, name: x}\n" + _billion_laughs(9), "max_aliased_nodes", 7),
    ],
    ids=["yaml", "json", "json-100k", "block", "alias-chain", "alias-cycle", "alias-width"],
)
def test_deep_or_exploding_documents_are_refused_before_they_are_built(source, rule, line):
    with pytest.raises(DocumentError) as info:
        parse_document(source)
    assert [(i.field, i.rule, i.line) for i in info.value.issues] == [("document", rule, line)]


def test_nesting_and_aliases_within_the_limits_parse():
    settings = "{a: " * 20 + "1" + "}" * 20
    doc = parse_document(GOOD.replace("settings: {}", f"settings: {settings}"))
    assert doc.tenant.settings["a"]["a"]["a"]
    shared = GOOD.replace(
        'units: ["101", "102"]}]}',
        'units: &u ["101", "102"]}, {code: "2", units: *u}]}',
    )
    doc = parse_document(shared)
    assert [b.units for b in doc.projects[0].buildings] == [["101", "102"], ["101", "102"]]


def test_many_buildings_may_share_one_list_of_units():
    """An estate of identical buildings written with one anchor: 150 buildings of the same
    1,000 units stand for 150,000 nodes, well within what the same document written out
    (also taken) holds."""
    units = ", ".join(f'"{n}"' for n in range(1000))
    buildings = [f'{{code: "1", units: &u [{units}]}}']
    buildings += [f'{{code: "{b}", units: *u}}' for b in range(2, 151)]
    shared = GOOD.replace('{code: "1", name: 1号楼, units: ["101", "102"]}', ", ".join(buildings))
    assert shared != GOOD
    doc = parse_document(shared)
    assert len(doc.projects[0].buildings) == 150
    assert all(len(b.units) == 1000 for b in doc.projects[0].buildings)


@pytestmark_db
@pytest.mark.parametrize("content_type", ["application/yaml", "application/json", None])
async def test_a_deep_document_is_a_422_over_the_api(client, company_a, content_type):
    headers = dict(company_a.token("tenant_admin"))
    if content_type:
        headers["Content-Type"] = content_type
    for doc in (
        b"tenant: " + b"[" * 5000 + b"]" * 5000,
        b'{"tenant": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ):
        r = await client.post("/v1/onboarding", content=doc, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid-document"
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("document", "max_depth")]


@pytestmark_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/yaml", GOOD.encode().replace("示范".encode(), b"\xff\xfe")),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ],
    ids=["yaml", "png"],
)
async def test_a_body_that_is_not_utf8_names_the_body(client, company_a, content_type, body):
    headers = {**company_a.token("tenant_admin"), "Content-Type": content_type}
    r = await client.post("/v1/onboarding", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "bad-encoding"
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body", "utf8")]
