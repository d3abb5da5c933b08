"""Seeding the demo property company through the intake CLI, once per database.

The CLI is the product's own onboarding path, so the demo exercises it. A stamp file
remembers the database, the company file's hash and the API key, so a second
`make run` neither onboards again nor mints another key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from propdesk.devstack.stack import scripts_dir

DEMO_TENANT = "DEMO"
COMPANY_FILE = Path("deploy/demo/company.yaml")
KEY_FIELDS = ("api_key", "key", "secret", "token")


@dataclass(frozen=True)
class DemoSeed:
    tenant: str
    api_key: str | None


def _find_key(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for name in KEY_FIELDS:
            value = payload.get(name)
            if isinstance(value, str) and value:
                return value
        for value in payload.values():
            found = _find_key(value)
            if found:
                return found
    return None


def _run_cli(
    cli: Path, args: list[str], env: Mapping[str, str], log: Path
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(cli), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ propdesk {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        f.write(f"(exit {proc.returncode})\n")
    return proc


def seed_demo(
    state_dir: Path,
    database_url: str,
    env: Mapping[str, str],
    company_file: Path = COMPANY_FILE,
    cli: Path | None = None,
) -> DemoSeed | None:
    """Onboard the demo company and make an API key; None (with a warning) if not possible."""
    if cli is None:
        if importlib.util.find_spec("intake.cli") is None:
            print("devstack: WARNING: intake CLI (intake.cli) not found; demo tenant not seeded")
            return None
        cli = scripts_dir() / "propdesk"
    if not company_file.exists():
        print(f"devstack: WARNING: {company_file} not found; demo tenant not seeded")
        return None
    digest = hashlib.sha256(company_file.read_bytes()).hexdigest()
    stamp_path = state_dir / "demo" / "seed.json"
    log = state_dir / "logs" / "seed.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp: dict[str, Any] = {}
    if stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
    same_db = stamp.get("database_url") == database_url
    if same_db and stamp.get("company_sha256") == digest and stamp.get("api_key"):
        return DemoSeed(DEMO_TENANT, stamp["api_key"])

    onboard = _run_cli(cli, ["onboard", str(company_file), "--json"], env, log)
    if onboard.returncode != 0:
        print(f"devstack: WARNING: onboarding the demo company failed (see {log}):")
        print("    " + "\n    ".join((onboard.stderr or onboard.stdout).strip().splitlines()[-10:]))
        return None
    api_key = stamp.get("api_key") if same_db else None
    if not api_key:
        created = _run_cli(cli, ["apikey", "create", "--tenant", DEMO_TENANT, "--json"], env, log)
        if created.returncode != 0:
            print(f"devstack: WARNING: creating the demo API key failed (see {log})")
            return DemoSeed(DEMO_TENANT, None)
        try:
            api_key = _find_key(json.loads(created.stdout))
        except json.JSONDecodeError:
            api_key = None
        if not api_key:
            print(f"devstack: WARNING: no API key in `propdesk apikey create --json` (see {log})")
            return DemoSeed(DEMO_TENANT, None)
    stamp_path.parent.mkdir(parents=True, exist_ok=True)
    stamp_path.write_text(
        json.dumps({"database_url": database_url, "company_sha256": digest, "api_key": api_key})
    )
    stamp_path.chmod(0o600)
    return DemoSeed(DEMO_TENANT, api_key)
