"""`propdesk`: the operator's command line for onboarding companies, API keys and tokens.

    propdesk onboard FILE.yaml [--json]
    propdesk apikey create --tenant CODE [--project CODE ...] [--name N] [--json]
    propdesk apikey revoke --tenant CODE KEY_ID [--json]
    propdesk token --tenant CODE --role ROLE [--project CODE ...] [--subject S] [--json]
    propdesk token --tenant CODE --staff CODE [--role ROLE] [--project CODE ...] [--json]

With --staff the token is that staff member's: `sub` is their staff id (the
`staff.upserted.staff_id` dispatch knows them by), roles are theirs unless --role narrows
or replaces them, and the project scope is theirs (--project may narrow it).

It connects as the application role (row-level security applies): the company is found by
code through a narrow lookup function, and everything else runs in that tenant's context.
Exit status: 0 done, 2 bad input (a bad file names each line and field), 1 other errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from intake import apikey_cache, directory_cache
from intake.api.schemas import ApiKeyIn
from intake.onboarding.apply import apply_document
from intake.onboarding.document import DocumentError, parse_document
from intake.store import apikeys
from intake.store import tenants as directory
from propdesk.auth.roles import Role
from propdesk.auth.tokens import issue_token
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import DEVELOPMENT_ENVIRONMENTS, Settings, get_settings
from propdesk.tenancy import TenantContext

ACTOR = "cli:operator"


class CliError(Exception):
    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text)


async def _with_sessions(settings: Settings, work: Any) -> Any:
    engine = create_engine(settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0}))
    try:
        # Connect first, alone: a database that is not there (or refuses this role) is
        # said plainly, and an error of the work itself is never mistaken for it.
        try:
            async with engine.connect():
                pass
        except (OSError, DBAPIError) as exc:
            where = make_url(settings.app_db_url).render_as_string(hide_password=True)
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            raise CliError(
                f"cannot reach the database at {where}: {cause}. Under `make run`, run"
                " `. .state/env` first (it sets PROPDESK_DATABASE_URL and the rest);"
                " elsewhere, set PROPDESK_DATABASE_URL.",
                status=3,
            ) from None
        return await work(session_factory(engine))
    finally:
        await engine.dispose()


async def _announcer(settings: Settings, cache: Any, ttl: float) -> Any:
    """A NATS connection on which this command tells the running intake processes to drop
    what `cache` holds of its change; None (and a warning) if NATS cannot be reached: they
    then see the change when their entries expire or are reloaded (`ttl`)."""
    from nats.errors import NoServersError

    from propdesk.bus.streams import connect

    try:
        # The services' own connect: the CA of PROPDESK_NATS_CA_FILE, TLS first for tls://
        # URLs, the user's inbox prefix.
        # One attempt per server: with allow_reconnect=False alone, nats-py still goes
        # round the servers for ever while none answers (max_reconnect_attempts -1).
        nc = await connect(
            settings, name="propdesk-cli", allow_reconnect=False, max_reconnect_attempts=1
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        print(
            f"warning: NATS unreachable ({exc!r}): running intake processes see this"
            f" change within {ttl:.0f} s",
            file=sys.stderr,
        )
        return None
    await cache.connect(nc)
    return nc


async def _resolve(
    sessions: Any, tenant_code: str, project_codes: list[str]
) -> tuple[UUID, list[UUID] | None]:
    async with tenant_transaction(sessions, TenantContext(tenant_id=None, actor=ACTOR)) as s:
        tenant_id = await directory.tenant_id_by_code(s, tenant_code)
    if tenant_id is None:
        raise CliError(f"unknown tenant {tenant_code!r}")
    if not project_codes:
        return tenant_id, None
    async with tenant_transaction(sessions, TenantContext.for_tenant(tenant_id, actor=ACTOR)) as s:
        found = await directory.project_ids_by_codes(s, project_codes)
    missing = [c for c in project_codes if c not in found]
    if missing:
        raise CliError(f"unknown project(s) of {tenant_code}: {', '.join(missing)}")
    return tenant_id, [found[c] for c in project_codes]


@dataclass(frozen=True, slots=True)
class StaffClaims:
    tenant_id: UUID
    staff_id: UUID
    name: str
    roles: list[str]
    project_ids: list[UUID] | None  # None: every project of the tenant


def staff_claims(
    tenant_id: UUID,
    staff: Any,
    project_ids_by_code: dict[str, UUID],
    requested_projects: list[str],
) -> StaffClaims:
    """The token claims of a staff member (a `intake.staff` row): their id, roles and
    project scope; requested projects may only narrow that scope."""
    if not staff.active:
        raise CliError(f"staff {staff.code} is not active")
    own: list[UUID] | None = list(staff.project_ids) or None
    scope = own
    if requested_projects:
        wanted = [project_ids_by_code[c] for c in requested_projects]
        outside = [
            c for c, p in zip(requested_projects, wanted, strict=True) if own and p not in own
        ]
        if outside:
            raise CliError(f"staff {staff.code} does not work in: {', '.join(outside)}")
        scope = wanted
    return StaffClaims(tenant_id, staff.id, staff.name, list(staff.roles), scope)


async def resolve_staff(
    sessions: Any, tenant_code: str, staff_code: str, project_codes: list[str]
) -> StaffClaims:
    """Who a staff token is for, read under the tenant's own context (RLS applies)."""
    tenant_id, _ = await _resolve(sessions, tenant_code, [])
    ctx = TenantContext.for_tenant(tenant_id, actor=ACTOR)
    async with tenant_transaction(sessions, ctx) as s:
        member = await directory.staff_by_code(s, staff_code)
        found = await directory.project_ids_by_codes(s, project_codes) if project_codes else {}
    if member is None:
        raise CliError(f"unknown staff {staff_code!r} in {tenant_code}")
    missing = [c for c in project_codes if c not in found]
    if missing:
        raise CliError(f"unknown project(s) of {tenant_code}: {', '.join(missing)}")
    return staff_claims(tenant_id, member, found, project_codes)


def cmd_onboard(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = parse_document(source)
    except DocumentError as exc:
        if args.json:
            print(
                json.dumps(
                    {"file": str(path), "errors": [i.as_field_error() for i in exc.issues]},
                    ensure_ascii=False,
                    indent=2,
                )
            )
        for issue in exc.issues:
            where = f"{path}:{issue.line}" if issue.line is not None else str(path)
            print(f"{where}: {issue.field}: {issue.message} [{issue.rule}]", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        line = source[: exc.start].count(b"\n") + 1
        raise CliError(
            f"{path}:{line}: not UTF-8: byte 0x{source[exc.start]:02x} at offset {exc.start}"
        ) from None

    async def work(sessions: Any) -> Any:
        nc = await _announcer(settings, directory_cache.CACHE, directory_cache.TTL_SECONDS)
        try:
            return await apply_document(sessions, doc, actor=ACTOR)
        finally:
            if nc is not None:
                await directory_cache.CACHE.settle()
                await nc.drain()

    report = asyncio.run(_with_sessions(settings, work))
    data = report.as_dict()
    lines = [f"tenant {report.tenant_code} ({report.tenant_id})"]
    for kind in ("created", "changed", "unchanged"):
        items = data[kind]
        lines.append(
            f"  {kind}: {len(items)}"
            + (
                f"  ({', '.join(items[:20])}" + (", …)" if len(items) > 20 else ")")
                if items and kind != "unchanged"
                else ""
            )
        )
    _print(data, args.json, "\n".join(lines))
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    # The bounds `POST /v1/api-keys` holds a key to (`ApiKeyIn`): a key of rate 0 or less
    # would be refused on every request, a nameless one could not be told from another.
    try:
        body = ApiKeyIn(
            name=args.name, projects=args.project, rate_limit_per_minute=args.rate_limit
        )
    except ValidationError as exc:
        options = {
            "name": "--name",
            "projects": "--project",
            "rate_limit_per_minute": "--rate-limit",
        }
        raise CliError(
            "; ".join(
                f"{options.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']} [{e['type']}]"
                for e in exc.errors()
            )
        ) from None
    repeated = sorted({c for c in body.projects or [] if (body.projects or []).count(c) > 1})
    if repeated:
        raise CliError(f"--project: {', '.join(repeated)} given more than once [unique]")
    args.name = body.name

    async def work(sessions: Any) -> Any:
        tenant_id, project_ids = await _resolve(sessions, args.tenant, args.project or [])
        async with tenant_transaction(
            sessions, TenantContext.for_tenant(tenant_id, actor=ACTOR)
        ) as s:
            new = await apikeys.create_key(
                s,
                tenant_id=tenant_id,
                name=args.name,
                project_ids=project_ids,
                created_by=ACTOR,
                rate_limit_per_minute=args.rate_limit,
            )
        return tenant_id, project_ids, new

    tenant_id, project_ids, new = asyncio.run(_with_sessions(settings, work))
    data = {
        "id": str(new.id),
        "key_id": new.key_id,
        "key": new.secret,
        "name": args.name,
        "tenant": args.tenant,
        "tenant_id": str(tenant_id),
        "project_ids": [str(p) for p in project_ids] if project_ids is not None else None,
        "rate_limit_per_minute": args.rate_limit,
    }
    _print(data, args.json, f"{new.secret}\n(shown once; send it as the X-API-Key header)")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    key_id = apikeys.parse_key(args.key) or args.key  # the public id, or the whole key

    async def work(sessions: Any) -> Any:
        tenant_id, _ = await _resolve(sessions, args.tenant, [])
        async with tenant_transaction(
            sessions, TenantContext.for_tenant(tenant_id, actor=ACTOR)
        ) as s:
            row_id = await apikeys.revoke_by_key_id(s, key_id)
        if row_id is None:
            raise CliError(f"tenant {args.tenant} has no active API key {key_id}")
        cache = apikey_cache.CACHE
        nc = await _announcer(settings, cache, cache.ttl)
        if nc is not None:
            cache.revoked()
            await cache.settle()
            await nc.drain()
        return tenant_id, row_id

    tenant_id, row_id = asyncio.run(_with_sessions(settings, work))
    data = {
        "id": str(row_id),
        "key_id": key_id,
        "tenant": args.tenant,
        "tenant_id": str(tenant_id),
        "revoked": True,
    }
    _print(data, args.json, f"revoked {key_id} (tenant {args.tenant})")
    return 0


def _roles(values: list[str]) -> list[str]:
    roles: list[str] = []
    for value in values:
        for r in value.split(","):
            try:
                roles.append(Role(r.strip()).value)
            except ValueError:
                raise CliError(
                    f"unknown role {r!r}; one of {', '.join(x.value for x in Role)}"
                ) from None
    return roles


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    if settings.environment not in DEVELOPMENT_ENVIRONMENTS:
        # Anyone with shell access to a production image could mint any token with it.
        raise CliError(
            f"`propdesk token` is a development tool; refused in environment "
            f"{settings.environment!r} (staff tokens come from the identity provider there)"
        )
    if args.ttl is not None and not 0 < args.ttl <= settings.token_max_ttl_seconds:
        raise CliError(f"--ttl must be between 1 and {settings.token_max_ttl_seconds} seconds")
    if args.staff:
        return _staff_token(args, settings)
    if not args.role:
        raise CliError("--role is required (or --staff CODE for a staff member's token)")
    roles = _roles(args.role)
    if Role.OPERATOR in roles:
        if args.tenant or args.project:
            raise CliError("an operator token belongs to no tenant: leave out --tenant/--project")
        tenant_id, project_ids = None, None
    else:
        if not args.tenant:
            raise CliError("--tenant is required for a staff token")
        tenant_id, project_ids = asyncio.run(
            _with_sessions(settings, lambda s: _resolve(s, args.tenant, args.project or []))
        )
    subject = args.subject or f"dev:{'+'.join(roles)}"
    token = issue_token(
        settings,
        tenant_id=tenant_id,
        subject=subject,
        roles=roles,
        project_ids=project_ids,
        ttl=args.ttl,
    )
    data = {
        "token": token,
        "tenant": args.tenant,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "project_ids": [str(p) for p in project_ids] if project_ids is not None else None,
        "roles": roles,
        "subject": subject,
    }
    _print(data, args.json, token)
    return 0


def _staff_token(args: argparse.Namespace, settings: Settings) -> int:
    if not args.tenant:
        raise CliError("--tenant is required with --staff")
    if args.subject:
        raise CliError("--subject cannot be given with --staff: the subject is the staff id")
    claims: StaffClaims = asyncio.run(
        _with_sessions(
            settings, lambda s: resolve_staff(s, args.tenant, args.staff, args.project or [])
        )
    )
    roles = _roles(args.role) if args.role else claims.roles
    if Role.OPERATOR in roles:
        raise CliError("a staff member's token cannot carry the operator role")
    if not roles:
        raise CliError(f"staff {args.staff} has no roles; give --role")
    token = issue_token(
        settings,
        tenant_id=claims.tenant_id,
        subject=str(claims.staff_id),
        roles=roles,
        project_ids=claims.project_ids,
        ttl=args.ttl,
    )
    data = {
        "token": token,
        "tenant": args.tenant,
        "tenant_id": str(claims.tenant_id),
        "staff": args.staff,
        "staff_id": str(claims.staff_id),
        "name": claims.name,
        "project_ids": (
            [str(p) for p in claims.project_ids] if claims.project_ids is not None else None
        ),
        "roles": roles,
        "subject": str(claims.staff_id),
    }
    _print(data, args.json, token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propdesk", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    onboard = sub.add_parser("onboard", help="create or update a company from a YAML file")
    onboard.add_argument("file")
    onboard.add_argument("--json", action="store_true")
    onboard.set_defaults(func=cmd_onboard)

    apikey = sub.add_parser("apikey", help="API keys")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="create an API key (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--project", action="append", help="limit to a project (repeatable)")
    create.add_argument("--name", default="integration")
    create.add_argument("--rate-limit", type=int, default=6000, help="requests per minute")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_apikey_create)
    revoke = apikey_sub.add_parser(
        "revoke", help="revoke an API key (every running intake refuses it at once)"
    )
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key", metavar="KEY_ID", help="the key's id (or the whole key)")
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(func=cmd_apikey_revoke)

    token = sub.add_parser("token", help="a signed staff token for development")
    token.add_argument("--tenant")
    token.add_argument("--role", action="append", help="repeatable or a,b")
    token.add_argument("--staff", help="a staff member's code: their id, roles and projects")
    token.add_argument("--project", action="append")
    token.add_argument("--subject")
    token.add_argument("--ttl", type=float, default=None, help="seconds")
    token.add_argument("--json", action="store_true")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, get_settings()))
    except CliError as exc:
        print(f"propdesk: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    raise SystemExit(main())
