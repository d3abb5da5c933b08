"""Settings for every propdesk process, read from the environment with the PROPDESK_ prefix."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

SERVICE_NAMES = ("intake", "dispatch", "sla", "callback", "reporting")
# Environments where the development defaults (token secret, passwords) are acceptable;
# any other name (production, staging, prod, ...) is treated as production.
DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "test"})
DEV_TOKEN_SECRET = "dev-only-not-a-secret-change-me"
MIN_TOKEN_SECRET_BYTES = 32
DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "sla": 8003, "callback": 8004, "reporting": 8005}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROPDESK_", extra="ignore")

    environment: str = "development"

    # PostgreSQL. `database_url` carries credentials that may create roles and run
    # migrations; services at run time connect as `app_db_user`, a role that owns nothing
    # and is subject to row-level security (see docs/architecture.md, "Tenancy").
    database_url: str = "postgresql://postgres@127.0.0.1:5432/propdesk"
    app_database_url: str | None = None
    app_db_user: str = "propdesk_app"
    app_db_password: str = "propdesk_app"
    db_pool_size: int = 10
    db_max_overflow: int = 10

    nats_url: str = "nats://127.0.0.1:4222"
    # A PEM file of the CA that signed the NATS servers' certificates (tls:// URLs; deploy/
    # uses a private CA): their certificates and names are checked against it. Unset, a
    # server asking for TLS is checked against the system's CAs.
    nats_ca_file: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"

    # JetStream: one stream for all events, subjects pd.<type>.<tenant>.<project>.
    stream_name: str = "PROPDESK"
    stream_subjects: str = "pd.>"
    stream_replicas: int = 1
    stream_max_age_days: float = 30.0
    stream_duplicate_window_seconds: float = 600.0
    # Who creates and changes the stream and the durable consumers: "service" (each
    # process ensures what it uses at start, as in development) or "operator" (deployed:
    # `python -m propdesk.bus.cli provision` as the NATS user operator, before the
    # services start; a service then only checks they are there, and its NATS user may
    # not change them: `deploy/nats/auth.conf`).
    bus_provisioning: Literal["service", "operator"] = "service"
    consumer_max_deliver: int = 8
    consumer_ack_wait_seconds: float = 30.0
    consumer_backoff_seconds: list[float] = Field(default_factory=lambda: [1, 2, 5, 15, 30, 60])

    # Outbox relay.
    # Garbage collection of a service process (`propdesk.service.runner.tune_gc`).
    gc_gen0_threshold: int = 20_000
    outbox_batch_size: int = 256
    outbox_poll_interval_seconds: float = 1.0
    # After a partial batch, the relay waits this long for more rows before the next one:
    # under load, bigger batches (fewer round trips per event) for a few ms of latency.
    outbox_linger_seconds: float = 0.005
    outbox_retention_days: float = 14.0
    # A consumer's inbox (the events it applied) must outlive every way an event can come
    # again: the outbox's retention plus the stream's max age (`propdesk.bus.retention`).
    inbox_retention_days: float = 45.0

    # HTTP.
    host: str = "127.0.0.1"
    intake_port: int = DEFAULT_PORTS["intake"]
    dispatch_port: int = DEFAULT_PORTS["dispatch"]
    sla_port: int = DEFAULT_PORTS["sla"]
    callback_port: int = DEFAULT_PORTS["callback"]
    reporting_port: int = DEFAULT_PORTS["reporting"]
    max_body_bytes: int = 256 * 1024

    # Signing key for staff bearer tokens (HMAC-SHA256). Outside development it must be set:
    # at least 32 bytes, not a placeholder (`propdesk.auth.tokens.check_token_secret`).
    token_secret: str = DEV_TOKEN_SECRET
    token_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    # No token lives longer, whoever issued it (verification refuses longer ones).
    token_max_ttl_seconds: int = Field(default=24 * 3600, ge=60)

    # Client spans for every SQL statement and Redis command (the HTTP and messaging spans
    # are always on), when spans are exported at all (`propdesk.telemetry.exporting`).
    # Off trims per-request overhead where traces are collected but these are not wanted.
    trace_database: bool = True
    trace_redis: bool = True

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _inbox_outlives_redeliveries(self) -> Settings:
        # An outbox row re-published on the last day of its retention stays in the stream
        # for the stream's max age: the consumers' inbox rows of its event must outlast
        # both (`propdesk.bus.retention`). A max age of 0 is JetStream's "for ever".
        if self.stream_max_age_days <= 0:
            raise ValueError(
                "stream_max_age_days must be above 0 (0 is JetStream's unlimited age, which"
                " no inbox retention can outlast)"
            )
        needed = self.outbox_retention_days + self.stream_max_age_days
        if self.inbox_retention_days <= needed:
            raise ValueError(
                f"inbox_retention_days ({self.inbox_retention_days:g}) must exceed"
                f" outbox_retention_days + stream_max_age_days ({needed:g}): an event"
                " delivered again after its inbox rows are gone would be applied twice"
            )
        return self

    def port_for(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    @property
    def app_db_url(self) -> str:
        """The URL services use at run time: the app role on the same server and database."""
        if self.app_database_url:
            return self.app_database_url
        url = make_url(self.database_url)
        return url.set(username=self.app_db_user, password=self.app_db_password).render_as_string(
            hide_password=False
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()


def async_url(url: str) -> str:
    """The SQLAlchemy asyncpg flavour of a postgresql:// URL."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """A plain postgresql:// DSN for asyncpg.connect (no +driver suffix)."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)
