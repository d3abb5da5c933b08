"""`propdesk token --staff CODE`: a token that is that staff member's, as dispatch knows
them (sub = staff id), with their roles and project scope."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID, uuid4

import pytest

from intake.cli import main
from propdesk.auth.tokens import verify_token
from propdesk.settings import get_settings

from .conftest import admin_fetch

COMPANY = """\
tenant: {{code: {code}, name: 令牌物业, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn}}
  - {{code: MOON, name: 月亮湾, city: 武汉, time_zone: Asia/Shanghai, calendar: cn}}
departments:
  - {{code: eng, name: 工程部, kind: engineering, project: SUNRISE}}
staff:
  - {{code: E001, name: 张工, roles: [handler, department_head], department: eng,
     projects: [SUNRISE]}}
  - {{code: A001, name: 陈助理, roles: [affairs_assistant]}}
  - {{code: X001, name: 离职, roles: [handler], projects: [SUNRISE], active: false}}
routing: []
"""


@pytest.fixture
def cli(tmp_path, intake_settings, monkeypatch, capsys):
    monkeypatch.setenv("PROPDESK_DATABASE_URL", intake_settings.database_url)
    get_settings.cache_clear()
    code = f"TK{uuid4().hex[:6].upper()}"
    f = tmp_path / "c.yaml"
    f.write_text(COMPANY.format(code=code), encoding="utf-8")
    assert main(["onboard", str(f)]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, dict | None, str]:
        status = main(["token", "--tenant", code, *args, "--json"])
        out = capsys.readouterr()
        return status, json.loads(out.out) if status == 0 else None, out.err

    yield run
    get_settings.cache_clear()


def test_staff_token_carries_the_staff_id_roles_and_projects(cli, intake_settings):
    status, data, _ = cli("--staff", "E001")
    assert status == 0
    # The CLI runs its own event loop, so this test is synchronous.
    [row] = asyncio.run(
        admin_fetch(
            intake_settings,
            "SELECT id, project_ids FROM intake.staff WHERE tenant_id = $1 AND code = 'E001'",
            UUID(data["tenant_id"]),
        )
    )
    claims = verify_token(intake_settings, data["token"])
    assert claims.sub == str(row["id"]) == data["staff_id"]
    assert sorted(claims.roles) == ["department_head", "handler"]
    assert claims.project_ids == frozenset(row["project_ids"])

    # --role replaces the staff member's roles (e.g. to act as a handler only).
    status, data, _ = cli("--staff", "E001", "--role", "handler")
    assert status == 0 and verify_token(intake_settings, data["token"]).roles == {"handler"}

    # No projects in the directory: the whole tenant.
    status, data, _ = cli("--staff", "A001")
    assert status == 0 and verify_token(intake_settings, data["token"]).project_ids is None
    status, data, _ = cli("--staff", "A001", "--project", "MOON")
    assert status == 0 and data["project_ids"] is not None and len(data["project_ids"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--staff", "NOPE"), "unknown staff 'NOPE'"),
        (("--staff", "X001"), "not active"),
        (("--staff", "E001", "--project", "MOON"), "does not work in: MOON"),
        (("--staff", "E001", "--project", "MARS"), "unknown project"),
        (("--staff", "E001", "--subject", "me"), "--subject cannot be given"),
        (("--staff", "E001", "--role", "operator"), "operator"),
        ((), "--role is required"),
    ],
)
def test_bad_staff_token_requests_exit_2(cli, args, message):
    status, _, err = cli(*args)
    assert status == 2 and message in err, err


def test_the_token_command_is_refused_outside_development(cli, monkeypatch):
    """A production image has the CLI installed: it must not mint tokens there, and nowhere
    a token longer-lived than the maximum."""
    status, _, err = cli("--role", "handler", "--ttl", str(10 * 365 * 86400))
    assert status == 2 and "--ttl must be between 1 and" in err
    monkeypatch.setenv("PROPDESK_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPDESK_TOKEN_SECRET", "q8V1f0nC3x2rJm5u7WbK9pLs4dTy6hEzAa0")
    get_settings.cache_clear()
    status, _, err = cli("--role", "operator")
    assert status == 2 and "development tool" in err


def test_an_operator_token_with_a_tenant_is_refused_not_silently_widened(cli):
    status, _, err = cli("--role", "operator")  # the fixture names a tenant
    assert status == 2 and "belongs to no tenant" in err


def test_an_unreachable_database_is_said_plainly_not_as_a_traceback(monkeypatch, capsys):
    """A newcomer running `propdesk token` in a shell without `. .state/env` got a
    sixty-line ConnectionRefusedError."""
    from propdesk.devstack.ports import free_port

    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x"
    status, err = _token_against(monkeypatch, capsys, url)
    assert status == 3
    assert err.startswith("propdesk: cannot reach the database at postgresql://")
    assert ". .state/env" in err and "secret" not in err


def test_a_database_that_refuses_is_said_plainly_too(intake_settings, monkeypatch, capsys):
    """PostgreSQL answers but refuses (no such database): SQLAlchemy wraps asyncpg's error,
    which the first version of the message above did not catch."""
    from sqlalchemy.engine import make_url

    url = make_url(intake_settings.database_url).set(database="no_such_database")
    status, err = _token_against(monkeypatch, capsys, url.render_as_string(hide_password=False))
    assert status == 3, err
    assert err.startswith("propdesk: cannot reach the database at postgresql://")
    assert "no_such_database" in err and "Traceback" not in err


def _token_against(monkeypatch, capsys, database_url: str) -> tuple[int, str]:
    """`propdesk token` with PROPDESK_DATABASE_URL at `database_url`: status, stderr."""
    monkeypatch.setenv("PROPDESK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        status = main(["token", "--tenant", "DEMO", "--role", "tenant_admin"])
    finally:
        get_settings.cache_clear()
    return status, capsys.readouterr().err
