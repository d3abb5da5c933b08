"""The whole local stack: which servers to start (or reuse), the database bootstrap, the
environment every child gets, and the five services."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from propdesk.devstack.nats import NatsServer
from propdesk.devstack.ports import LOCALHOST, free_port
from propdesk.devstack.postgres import PostgresServer
from propdesk.devstack.readiness import run_coroutine
from propdesk.devstack.redis import RedisServer
from propdesk.devstack.supervisor import Child, Supervisor
from propdesk.settings import DEFAULT_PORTS, SERVICE_NAMES, Settings

Mode = Literal["run", "test", "bench", "migrate"]

# Not the servers' usual ports, so a system PostgreSQL/NATS/Redis can keep running.
DEFAULT_PG_PORT = 5433
DEFAULT_NATS_PORT = 4223
DEFAULT_NATS_HTTP_PORT = 8223
DEFAULT_REDIS_PORT = 6380
DATABASE_NAME = "propdesk"


def scripts_dir() -> Path:
    return Path(sysconfig.get_path("scripts"))


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a port number") from None


def _services_from_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """PROPDESK_DEVSTACK_SERVICES: unset = all five, empty = none, else a comma list."""
    raw = env.get("PROPDESK_DEVSTACK_SERVICES")
    if raw is None:
        return SERVICE_NAMES
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown:
        raise SystemExit(
            f"PROPDESK_DEVSTACK_SERVICES: unknown service(s) {', '.join(unknown)}; "
            f"known: {', '.join(SERVICE_NAMES)}"
        )
    return names


@dataclass
class StackConfig:
    mode: Mode
    state_dir: Path
    throwaway: bool
    pg_port: int
    nats_port: int
    nats_http_port: int | None
    redis_port: int
    services: tuple[str, ...]
    service_ports: dict[str, int]
    # Servers given from outside (PROPDESK_DATABASE_URL etc.): used as they are, not started.
    external_database_url: str | None = None
    external_nats_url: str | None = None
    external_redis_url: str | None = None

    @classmethod
    def from_env(cls, mode: Mode, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        throwaway = mode in ("test", "bench")
        if throwaway:
            state_dir = Path(tempfile.mkdtemp(prefix=f"propdesk-{mode}-"))
            pg, nats, nats_http, redis = free_port(), free_port(), free_port(), free_port()
            ports = {name: free_port() for name in SERVICE_NAMES}
        else:
            state_dir = Path(env.get("PROPDESK_STATE_DIR") or Path.cwd() / ".state")
            pg = _int_env(env, "PROPDESK_PG_PORT", DEFAULT_PG_PORT)
            nats = _int_env(env, "PROPDESK_NATS_PORT", DEFAULT_NATS_PORT)
            nats_http = _int_env(env, "PROPDESK_NATS_HTTP_PORT", DEFAULT_NATS_HTTP_PORT)
            redis = _int_env(env, "PROPDESK_REDIS_PORT", DEFAULT_REDIS_PORT)
            ports = {
                name: _int_env(env, f"PROPDESK_{name.upper()}_PORT", DEFAULT_PORTS[name])
                for name in SERVICE_NAMES
            }
        return cls(
            mode=mode,
            state_dir=state_dir.resolve(),
            throwaway=throwaway,
            pg_port=pg,
            nats_port=nats,
            nats_http_port=nats_http,
            redis_port=redis,
            services=_services_from_env(env) if mode == "run" else (),
            service_ports=ports,
            external_database_url=env.get("PROPDESK_DATABASE_URL") or None,
            external_nats_url=env.get("PROPDESK_NATS_URL") or None,
            external_redis_url=env.get("PROPDESK_REDIS_URL") or None,
        )

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"


@dataclass
class Stack:
    config: StackConfig
    supervisor: Supervisor = field(default_factory=Supervisor)
    database_url: str = ""
    nats_url: str = ""
    redis_url: str = ""
    started: list[str] = field(default_factory=list)

    def start_servers(self) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if cfg.external_database_url:
            self.database_url = cfg.external_database_url
        else:
            # pg_stat_statements: which statements the server spends its time on (the
            # bench's --profile writes them per phase; operators query the view).
            pg = PostgresServer(
                cfg.state_dir,
                cfg.pg_port,
                extra_settings={"shared_preload_libraries": "pg_stat_statements"},
            )
            self.supervisor.add(pg.start())
            self.database_url = pg.url(DATABASE_NAME)
            self.started.append("postgres")
        if cfg.external_nats_url:
            self.nats_url = cfg.external_nats_url
        else:
            nats = NatsServer(cfg.state_dir, cfg.nats_port, http_port=cfg.nats_http_port)
            self.supervisor.add(nats.start())
            self.nats_url = nats.url
            self.started.append("nats")
        if cfg.external_redis_url:
            self.redis_url = cfg.external_redis_url
        else:
            redis = RedisServer(cfg.state_dir, cfg.redis_port)
            self.supervisor.add(redis.start())
            self.redis_url = redis.url
            self.started.append("redis")

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url, nats_url=self.nats_url, redis_url=self.redis_url
        )

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PROPDESK_DATABASE_URL=self.database_url,
            PROPDESK_NATS_URL=self.nats_url,
            PROPDESK_REDIS_URL=self.redis_url,
            PROPDESK_STATE_DIR=str(self.config.state_dir),
        )
        for name, port in self.config.service_ports.items():
            env[f"PROPDESK_{name.upper()}_PORT"] = str(port)
        if self.config.mode == "test":
            env["PROPDESK_TEST_STACK"] = "1"
        if self.config.mode == "run":
            # Console lines for people; set PROPDESK_LOG_JSON=true to see what production logs.
            env.setdefault("PROPDESK_LOG_JSON", "false")
        return env

    def write_env_file(self) -> Path:
        """`.state/env`: the stack's addresses for a shell (`. .state/env`), so the
        `propdesk` CLI and one-off service runs find the servers `make run` started."""
        keys = ("PROPDESK_DATABASE_URL", "PROPDESK_NATS_URL", "PROPDESK_REDIS_URL")
        env = self.child_env()
        path = Path(self.config.state_dir) / "env"
        lines = ["# written by `make run`; source it: . .state/env"]
        lines += [f"export {k}={shlex.quote(env[k])}" for k in keys]
        lines += [
            f"export PROPDESK_{name.upper()}_PORT={port}"
            for name, port in self.config.service_ports.items()
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def prepare_database(self) -> list[str]:
        """Create the database if missing, then roles, schemas and every service's migrations."""
        from sqlalchemy.engine import make_url

        if run_coroutine(ensure_database(self.database_url)):
            name = make_url(self.database_url).database
            print(f"devstack: created database {name!r}", flush=True)
        return migrate(self.settings())

    def start_services(self) -> None:
        runner = scripts_dir() / "propdesk-service"
        env = self.child_env()
        width = max((len(n) for n in self.config.services), default=0)
        for name in self.config.services:
            child = Child(
                name,
                [str(runner), name],
                log_path=self.config.logs_dir / f"{name}.log",
                env=env,
                echo_prefix=f"{name:<{width}} | ",
                tier=1,
            )
            self.supervisor.start(child)

    def wait_services_healthy(self, timeout: float = 60.0) -> list[str]:
        """Names of services that answered /healthz in time (a dead one raises ChildDied)."""
        import httpx

        pending = set(self.config.services)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                self.supervisor.check()
                for name in sorted(pending):
                    url = f"http://{LOCALHOST}:{self.config.service_ports[name]}/healthz"
                    try:
                        if client.get(url).status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                time.sleep(0.2)
        return [n for n in self.config.services if n not in pending]

    def teardown(self) -> None:
        self.supervisor.stop_all()
        if self.config.throwaway:
            shutil.rmtree(self.config.state_dir, ignore_errors=True)


def missing_service_modules(services: tuple[str, ...]) -> list[str]:
    """Services whose `<name>.service` module (the runner's SPEC) does not exist yet."""
    if importlib.util.find_spec("propdesk.service.runner") is None:
        return list(services)
    return [n for n in services if importlib.util.find_spec(f"{n}.service") is None]


async def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist; True if it was created."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from propdesk.settings import asyncpg_dsn

    target = make_url(url)
    name = target.database or DATABASE_NAME
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = target.set(database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await conn.close()
    return True


def migrate(settings: Settings) -> list[str]:
    """Roles and schemas (propdesk.db.bootstrap), then each service's Alembic head."""
    try:
        from propdesk.db.migrate import upgrade_all
    except ImportError as exc:
        print(f"devstack: WARNING: no migrations run ({exc}); bootstrapping roles only", flush=True)
        import asyncio

        from propdesk.db.bootstrap import bootstrap

        asyncio.run(bootstrap(settings))
        return []
    return upgrade_all(settings)
