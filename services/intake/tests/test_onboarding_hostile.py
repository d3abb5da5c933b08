"""Onboarding and API keys given odd or hostile input: every bad document or key request is
refused with the line and the field at fault (a 422 over the API, exit 2 from the CLI),
never a 500 and never taken in silence."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from intake.onboarding.document import DocumentError, parse_document

from .test_onboarding import GOOD


def _issues(source: str) -> list[tuple[str, str, int | None]]:
    with pytest.raises(DocumentError) as info:
        parse_document(source)
    return [(i.field, i.rule, i.line) for i in info.value.issues]


def test_a_key_given_twice_is_refused_with_its_line():
    # PyYAML keeps the last of two equal keys in silence: the second `tenant` would have
    # onboarded another company than the file's first lines say.
    twice = GOOD.replace("routing: []", "routing: []\ntenant: {code: OTHER, name: 别家}")
    assert _issues(twice) == [("tenant", "duplicate_key", 10)]
    inner = GOOD.replace("kind: customer_service,", "kind: customer_service, kind: finance,")
    assert _issues(inner) == [("departments[0].kind", "duplicate_key", 6)]


def test_a_merged_key_may_still_be_overridden():
    merged = GOOD.replace(
        "tenant: {code: DEMO, name: 示范物业有限公司, settings: {}}",
        "base: &base {code: DEMO, name: 旧名}\ntenant: {<<: *base, name: 示范物业有限公司}",
    )
    # The merge itself is fine (no duplicate); `base` is just not a key of the document.
    assert _issues(merged) == [("base", "extra_forbidden", 1)]


@pytest.mark.parametrize(
    ("value", "field", "rule"),
    [
        ("{x: .nan}", "tenant.settings.x", "json_value"),
        ("{x: -.inf}", "tenant.settings.x", "json_value"),
        ("{opened: 2026-01-01}", "tenant.settings.opened", "json_value"),
        ("{at: 2026-01-01 10:00:00}", "tenant.settings.at", "json_value"),
        ("{logo: !!binary aGVsbG8=}", "tenant.settings.logo", "json_value"),
        ("{tags: !!set {a, b}}", "tenant.settings.tags", "json_value"),
        ("{deep: {list: [1, 2026-01-01]}}", "tenant.settings.deep.list[1]", "json_value"),
        ("{deep: {2026-01-01: x}}", "tenant.settings.deep", "json_value"),
        ('{deep: {k: "a\\0b"}}', "tenant.settings.deep.k", "no_nul"),
    ],
)
def test_settings_hold_json_values_only(value, field, rule):
    source = GOOD.replace("settings: {}", f"settings: {value}")
    assert _issues(source) == [(field, rule, 1)]


def test_settings_of_json_values_parse():
    source = GOOD.replace(
        "settings: {}", 'settings: {a: 1, b: 2.5, c: "2026-01-01", d: [true, null], e: {f: g}}'
    )
    assert parse_document(source).tenant.settings["c"] == "2026-01-01"


@pytest.mark.parametrize(
    "name", ["localtime", "Factory", "posixrules", "right/UTC", "posix/Asia/Shanghai"]
)
def test_a_file_of_the_hosts_zone_directory_is_no_time_zone(name):
    # Each loads as a zone: `localtime` is whatever the host's clock is set to, `right/UTC`
    # runs 27 s off UTC.
    source = GOOD.replace("time_zone: Asia/Shanghai", f"time_zone: {name}")
    assert _issues(source) == [("projects[0].time_zone", "value_error", 3)]


ENG = GOOD.replace(
    "staff:", "  - {code: eng, name: 工程部, kind: engineering, project: SUNRISE}\nstaff:"
)


@pytest.mark.parametrize(
    ("source", "field", "rule"),
    [
        # Dispatch hands an order to a rule's named handler only as staff of the department
        # the rule resolves to in the complaint's project; else it ignores him in silence.
        (
            ENG.replace("routing: []", "routing: [{department: eng, handler_staff: S001}]"),
            "routing[0].handler_staff",
            "in_department",
        ),
        (
            GOOD.replace("projects: [SUNRISE]}", "projects: []}").replace(
                "routing: []",
                "routing: [{department: cs, project: SUNRISE, handler_staff: S001}]",
            ),
            "routing[0].handler_staff",
            "covers_project",
        ),
        (
            GOOD.replace("projects: [SUNRISE]}", "projects: []}").replace(
                "routing: []", "routing: [{department: cs, handler_staff: S001}]"
            ),
            "routing[0].handler_staff",
            "in_department",
        ),
        (
            GOOD.replace("routing: []", "routing: [{department: cs, handler_role: operator}]"),
            "routing[0].handler_role",
            "enum",
        ),
        (
            GOOD.replace("routing: []", "routing: [{department: cs, inform: [cs, cs]}]"),
            "routing[0].inform",
            "unique",
        ),
    ],
    ids=["other-department", "not-on-the-project", "on-no-project", "operator", "inform-twice"],
)
def test_a_routing_entry_dispatch_could_not_follow_is_refused(source, field, rule):
    assert [(f, r) for f, r, _ in _issues(source)] == [(field, rule)]


def test_a_handler_of_the_department_by_kind_or_on_every_project_is_fine():
    by_kind = GOOD.replace(
        "routing: []", "routing: [{department: customer_service, handler_staff: S001}]"
    )
    assert parse_document(by_kind).routing[0].handler_staff == "S001"


def test_a_document_over_the_bound_is_refused_before_it_is_parsed():
    from intake.onboarding.document import MAX_DOCUMENT_BYTES

    padded = GOOD + "#" + "x" * MAX_DOCUMENT_BYTES + "\n"
    started = time.monotonic()
    assert _issues(padded) == [("document", "max_bytes", None)]
    assert time.monotonic() - started < 1.0  # parsing 5 MB would take about 100 s


def test_cli_names_the_line_and_byte_of_a_file_that_is_not_utf8(tmp_path, capsys):
    from intake.cli import main

    path = tmp_path / "company.yaml"
    path.write_bytes(GOOD.encode().replace("示范".encode(), b"\xff\xfe", 1))
    assert main(["onboard", str(path)]) == 2
    assert f"{path}:1: not UTF-8: byte 0xff at offset" in capsys.readouterr().err


def test_an_error_in_a_key_that_overrides_a_merge_names_the_overriding_line():
    # Constructing merges `<<` into the mapping (the merged pairs first): the error is in
    # the mapping's own `code`, on line 2, not in the merged valid one on line 1.
    merged = GOOD.replace(
        "tenant: {code: DEMO, name: 示范物业有限公司, settings: {}}",
        "b: &b {code: DEMO, name: x}\ntenant: {<<: *b, code: 'bad code!'}",
    )
    issues = _issues(merged)
    assert ("tenant.code", "string_pattern_mismatch", 2) in issues, issues


def test_libyaml_parses_when_pyyaml_has_it():
    import yaml

    from intake.onboarding import document

    # Pure Python took about 20 s a megabyte: a large company's document, minutes.
    assert (document._Events is not document._PythonEvents) == yaml.__with_libyaml__


def test_the_pure_python_parser_gives_the_same_document_and_bound_refusals(monkeypatch):
    """(Not every syntax error alike: libyaml takes a tab as spacing, as YAML 1.2 and JSON
    do, where PyYAML's scanner refuses it; a tab that indents is refused by both.)"""
    from intake.onboarding import document

    parsed = parse_document(GOOD)
    alias_bomb = "tenant: {code: DEMO, name: x}\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else 'x'}]\n" for i in range(9)
    )
    twice = GOOD.replace("kind: customer_service,", "kind: customer_service, kind: finance,")
    refusals = [_issues(alias_bomb), _issues(twice)]
    monkeypatch.setattr(
        document, "_BoundedLoader", document._bounded_loader(document._PythonEvents)
    )
    assert parse_document(GOOD) == parsed
    assert [_issues(alias_bomb), _issues(twice)] == refusals
    assert refusals[0][0][1] == "max_aliased_nodes" and refusals[1][0][1] == "duplicate_key"


def test_blank_skills_are_refused():
    source = GOOD.replace("projects: [SUNRISE]}", 'projects: [SUNRISE], skills: [fees, "  "]}')
    assert _issues(source) == [("staff[0].skills[1]", "string_too_short", 8)]


on_session_loop = pytest.mark.asyncio(loop_scope="session")


@on_session_loop
@pytest.mark.parametrize(
    "value", ["{x: .nan}", "{x: .inf}", "{d: 2026-01-01}", "{b: !!binary aGVsbG8=}"]
)
async def test_settings_json_cannot_carry_are_a_422_not_a_500(client, company_a, value):
    doc = GOOD.replace("DEMO", company_a.code).replace("settings: {}", f"settings: {value}")
    headers = {**company_a.token("tenant_admin"), "Content-Type": "application/yaml"}
    r = await client.post("/v1/onboarding", content=doc.encode(), headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "invalid-document"
    assert [(e["field"], e["rule"], e["line"]) for e in r.json()["errors"]] == [
        (f"tenant.settings.{value[1]}", "json_value", 1)
    ]


@on_session_loop
async def test_a_duplicate_key_is_a_422_over_the_api(client, company_a):
    doc = GOOD.replace("DEMO", company_a.code) + "tenant: {code: SOMEONE, name: 别家}\n"
    headers = {**company_a.token("tenant_admin"), "Content-Type": "application/yaml"}
    r = await client.post("/v1/onboarding", content=doc.encode(), headers=headers)
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"], e["line"]) for e in r.json()["errors"]] == [
        ("tenant", "duplicate_key", 10)
    ]


@on_session_loop
async def test_parsing_a_document_does_not_stall_the_other_requests(client, company_a, monkeypatch):
    """Parsing is pure Python (seconds for the largest body taken): the event loop must
    go on serving while it runs."""
    from intake.api import onboarding

    real = onboarding.parse_document

    def slow_parse(source: bytes):
        time.sleep(1.0)  # a large document
        return real(source)

    monkeypatch.setattr(onboarding, "parse_document", slow_parse)
    doc = GOOD.replace("DEMO", company_a.code).replace("Asia/Shanghai", "Mars/Olympus")
    headers = {**company_a.token("tenant_admin"), "Content-Type": "application/yaml"}
    finished: dict[str, float] = {}

    async def onboard() -> None:
        r = await client.post("/v1/onboarding", content=doc.encode(), headers=headers)
        assert r.status_code == 422, r.text
        finished["onboarding"] = time.monotonic()

    async def health() -> None:
        await asyncio.sleep(0.2)
        r = await client.get("/healthz")
        assert r.status_code == 200
        finished["healthz"] = time.monotonic()

    await asyncio.gather(onboard(), health())
    assert finished["healthz"] < finished["onboarding"] - 0.3, finished


@on_session_loop
async def test_a_change_of_skills_alone_is_a_change_dispatch_hears_of(resources, db_rows):
    from intake.onboarding.apply import apply_document

    source = GOOD.replace("DEMO", "SKILLS").replace(
        "projects: [SUNRISE]}", "projects: [SUNRISE], skills: [fees]}"
    )
    first = await apply_document(resources.sessions, parse_document(source), actor="t")
    assert "staff:S001" in first.created
    again = await apply_document(resources.sessions, parse_document(source), actor="t")
    assert "staff:S001" in again.unchanged
    changed = source.replace("skills: [fees]", "skills: [fees, parking]")
    third = await apply_document(resources.sessions, parse_document(changed), actor="t")
    assert "staff:S001" in third.changed, third
    events = await db_rows(
        "SELECT envelope->'payload'->'skills' AS skills FROM intake.outbox"
        " WHERE tenant_id = $1 AND event_type = 'staff.upserted' ORDER BY id",
        first.tenant_id,
    )
    skills = [json.loads(e["skills"]) for e in events]
    assert skills == [["fees"], ["fees", "parking"]]


@on_session_loop
@pytest.mark.parametrize("second", ["SUNRISE", "id"])
async def test_an_api_key_names_each_project_once(client, company_a, second):
    admin = company_a.token("tenant_admin")
    other = str(company_a.projects["SUNRISE"]) if second == "id" else second
    r = await client.post(
        "/v1/api-keys", json={"name": "cc", "projects": ["SUNRISE", other]}, headers=admin
    )
    assert r.status_code == 422, r.text
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body.projects.1", "unique")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-limit", "0"], "--rate-limit"),
        (["--rate-limit", "-5"], "--rate-limit"),
        (["--name", "   "], "--name"),
        (["--project", "SUNRISE", "--project", "SUNRISE"], "--project"),
    ],
)
def test_cli_apikey_create_holds_the_api_bounds(
    intake_settings, monkeypatch, capsys, options, message
):
    from intake.cli import main
    from propdesk.settings import get_settings

    monkeypatch.setenv("PROPDESK_DATABASE_URL", intake_settings.database_url)
    get_settings.cache_clear()
    try:
        assert main(["apikey", "create", "--tenant", "NOSUCH", *options, "--json"]) == 2
        err = capsys.readouterr().err
        assert message in err and "unknown tenant" not in err, err
    finally:
        get_settings.cache_clear()
