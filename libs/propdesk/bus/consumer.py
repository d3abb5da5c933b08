"""Durable pull consumers with an inbox: each event id is applied once per consumer.

For every message: parse the envelope, restore the producer's trace context, open one
transaction, set the event's tenant context and insert (consumer, event id) into the inbox
(one statement), run the handler, commit, then ack. A redelivered event finds its inbox
row and is acked without running the handler again. Errors nak with the configured
backoff; after the last allowed delivery, or at once for a `PermanentError` or an
unparseable message, the message is recorded in dead_letters and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from propdesk.bus.faults import crash_point
from propdesk.bus.streams import consumer_config, ensure_consumer
from propdesk.db.session import tenant_transaction
from propdesk.events.envelope import Envelope
from propdesk.settings import Settings
from propdesk.telemetry.propagation import extract
from propdesk.tenancy.context import TenantContext, system_context, use_context

log = logging.getLogger("propdesk.bus.consumer")
tracer = trace.get_tracer("propdesk.bus")

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


class PermanentError(Exception):
    """The event can never be applied (bad data, unknown reference): dead-letter it now."""


@dataclass(frozen=True)
class Consumer:
    name: str  # durable consumer name, also the inbox key
    schema: str  # the owning service's schema (inbox and dead_letters live there)
    subjects: list[str]
    handler: Handler
    batch: int = 64
    description: str = ""
    event_types: frozenset[str] = field(default_factory=frozenset)


class ConsumerRunner:
    def __init__(
        self,
        consumer: Consumer,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        nc: NATS | None = None,
    ) -> None:
        self.consumer = consumer
        self.settings = settings
        self.sessions = sessions
        self.nc = nc
        self.max_deliver = consumer_config(settings, consumer.name, consumer.subjects).max_deliver
        s = f'"{consumer.schema}"'
        # The tenant context and the inbox row in one round trip: the CTE's set_config
        # calls run when the INSERT reads `ctx`, before the row exists, so the policy's
        # WITH CHECK and every later statement of the transaction see the context
        # (set_config(..., true) lasts until the transaction ends, like apply_context).
        self._inbox = text(
            "WITH ctx AS (SELECT set_config('app.tenant_id', :tenant_text, true) AS t,"
            " set_config('app.project_ids', :project_ids, true) AS p,"
            " set_config('app.actor', :actor, true) AS a,"
            " set_config('app.roles', :roles, true) AS r,"
            " set_config('app.system', :system, true) AS s)"
            f" INSERT INTO {s}.inbox (consumer, event_id, tenant_id, project_id, event_type)"
            " SELECT :consumer, :event_id, :tenant_id, :project_id, :event_type FROM ctx"
            " ON CONFLICT DO NOTHING RETURNING 1"
        )
        self._actor = f"consumer:{consumer.name}"
        self._dead = text(
            f"INSERT INTO {s}.dead_letters (consumer, event_id, tenant_id, project_id, subject,"
            " deliveries, error, data, headers)"
            " VALUES (:consumer, :event_id, :tenant_id, :project_id, :subject, :deliveries,"
            " :error, :data, CAST(:headers AS jsonb))"
        )
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        c = self.consumer
        if self.nc is None:
            raise RuntimeError("ConsumerRunner.run needs a NATS connection")
        js = self.nc.jetstream()
        await ensure_consumer(js, self.settings, c.name, c.subjects)
        sub = await js.pull_subscribe_bind(durable=c.name, stream=self.settings.stream_name)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(c.batch, timeout=1)
                except (NatsTimeoutError, TimeoutError):
                    continue
                except Exception as exc:  # connection trouble: NATS reconnects on its own
                    log.warning("consumer %s fetch failed: %r", c.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    await self.handle(msg)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def handle(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        try:
            env = Envelope.model_validate_json(msg.data)
        except ValidationError as exc:
            await self._dead_letter(msg, None, deliveries, f"unparseable envelope: {exc}")
            await msg.term()
            return
        parent = extract(dict(msg.headers or {}))
        with tracer.start_as_current_span(
            f"consume {env.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.consumer.group.name": self.consumer.name,
                "messaging.message.id": str(env.id),
                "propdesk.tenant_id": str(env.tenant_id),
                "messaging.nats.deliveries": deliveries,
            },
        ) as span:
            try:
                applied = await self.apply(env)
                crash_point("consumer.before_ack")
                await msg.ack()
                if applied:
                    self.handled += 1
                else:
                    self.duplicates += 1
                    span.set_attribute("propdesk.duplicate", True)
            except PermanentError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._dead_letter(msg, env, deliveries, f"permanent: {exc}")
                await msg.term()
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                if deliveries >= self.max_deliver:
                    log.error(
                        "consumer %s: event %s failed %d times, dead-lettered: %r",
                        self.consumer.name,
                        env.id,
                        deliveries,
                        exc,
                    )
                    await self._dead_letter(msg, env, deliveries, repr(exc))
                    await msg.term()
                else:
                    backoff = self.settings.consumer_backoff_seconds or [1.0]
                    delay = backoff[min(deliveries - 1, len(backoff) - 1)]
                    log.warning(
                        "consumer %s: event %s failed (delivery %d), retry in %ss: %r",
                        self.consumer.name,
                        env.id,
                        deliveries,
                        delay,
                        exc,
                    )
                    await msg.nak(delay=delay)

    async def apply(self, env: Envelope) -> bool:
        """Apply one event exactly once: one transaction holding the inbox row and the
        handler's writes. False if this consumer had already applied it."""
        ctx = TenantContext.for_tenant(env.tenant_id, actor=self._actor)
        settings = ctx.settings()
        with use_context(ctx):
            async with self.sessions() as session, session.begin():
                first = await session.execute(
                    self._inbox,
                    {
                        "tenant_text": settings["app.tenant_id"],
                        "project_ids": settings["app.project_ids"],
                        "actor": settings["app.actor"],
                        "roles": settings["app.roles"],
                        "system": settings["app.system"],
                        "consumer": self.consumer.name,
                        "event_id": env.id,
                        "tenant_id": env.tenant_id,
                        "project_id": env.project_id,
                        "event_type": env.type,
                    },
                )
                if first.first() is None:
                    return False
                await self.consumer.handler(session, env)
                return True

    async def _dead_letter(
        self, msg: Msg, env: Envelope | None, deliveries: int, error: str
    ) -> None:
        self.dead_lettered += 1
        async with tenant_transaction(self.sessions, system_context("dead-letter")) as session:
            await session.execute(
                self._dead,
                {
                    "consumer": self.consumer.name,
                    "event_id": env.id if env else None,
                    "tenant_id": env.tenant_id if env else None,
                    "project_id": env.project_id if env else None,
                    "subject": msg.subject,
                    "deliveries": deliveries,
                    "error": error[:2000],
                    "data": msg.data,
                    "headers": orjson.dumps(dict(msg.headers or {})).decode(),
                },
            )
