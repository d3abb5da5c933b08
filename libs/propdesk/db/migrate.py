"""`python -m propdesk.db.migrate [service ...]`: bootstrap roles, then upgrade each schema.

Also `python -m propdesk.db.migrate revision SERVICE -m "message"` to start a migration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from alembic import command

from propdesk.db.bootstrap import bootstrap
from propdesk.db.migrations import alembic_config, migrations_dir, upgrade
from propdesk.settings import SERVICE_NAMES, Settings, get_settings

log = logging.getLogger("propdesk.migrate")


def services_with_migrations() -> list[str]:
    found = []
    for name in SERVICE_NAMES:
        try:
            if (migrations_dir(name) / "env.py").exists():
                found.append(name)
        except LookupError:
            continue
    return found


def upgrade_all(settings: Settings | None = None, services: list[str] | None = None) -> list[str]:
    """Bootstrap roles and schemas, then upgrade every service schema to head. Blocking."""
    settings = settings or get_settings()
    asyncio.run(bootstrap(settings))
    done = []
    for name in services or services_with_migrations():
        upgrade(name, settings)
        done.append(name)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="propdesk-migrate")
    sub = parser.add_subparsers(dest="cmd")
    up = sub.add_parser("upgrade", help="bootstrap roles and upgrade schemas (default)")
    up.add_argument("services", nargs="*")
    rev = sub.add_parser("revision", help="create a new migration for a service")
    rev.add_argument("service", choices=SERVICE_NAMES)
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "revision":
        command.revision(alembic_config(args.service), message=args.message)
        return 0
    done = upgrade_all(services=getattr(args, "services", None) or None)
    print("migrated:", ", ".join(done) or "(no service has migrations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
