"""Durable pull consumers with an inbox: each event id is applied once per consumer.

For every message: parse the envelope, restore the producer's trace context, open one
transaction, set the event's tenant context and insert (consumer, event id) into the inbox
(one statement), run the handler, commit, then ack. A redelivered event finds its inbox
row and is acked without running the handler again. Errors nak with the configured
backoff; after the last allowed delivery, or at once for a `PermanentError` or an
unparseable message, the message is recorded in dead_letters and terminated.

Dead-lettering is the runner's decision, never the server's: the durable consumer
redelivers without limit (`max_deliver` -1, see `streams.consumer_config`) and the runner
compares the message's `num_delivered` with `PROPDESK_CONSUMER_MAX_DELIVER`. A message is
terminated only after its dead letter committed; if the dead letter cannot be written (the
database is down, the process dies first), the message is nak'ed with the backoff, or left
to `ack_wait`, and comes back: the handler gets another try, and the dead letter another
when it fails again. A message whose terminate is lost, or whose process dies after the dead
letter committed, comes back as well: failing again, it finds its open dead letter (one per
consumer and event, the index `dead_letters_once`) and is terminated without a second row.
No failure of one message stops the consumer's loop.

A consumer may apply a fetched batch more cheaply (`Consumer.per_transaction`,
`Consumer.lanes`): the batch is spread over lanes by `lane_key` (events with the same key
stay in one lane, in stream order), the lanes run concurrently, each on its own
connection, and a lane applies up to `per_transaction` events in one transaction, one
tenant after another (in the order of their ids, so that replicas lock alike): for each
tenant's run of events one statement sets that tenant's context and inserts their inbox
rows, then the handler runs for each new event in order (or `batch_handler` once for the
run); after the last run, commit, then every message of the transaction is acked. Every
statement runs under exactly one tenant's context (the context of a run replaces the
previous one, `set_config(..., true)`), so row-level security holds as in a transaction per
tenant; the batch shares one BEGIN, one COMMIT and one WAL flush however many tenants it
spans. Each event still gets its own consume span continuing its producer's trace. When an
event's handler fails, the transaction is rolled back and split: the events before it are
applied again together, the failing one alone through the one-event path (nak with
backoff, dead letter), the rest together; so one bad event neither poisons nor delays the
others' guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from propdesk.bus import metrics
from propdesk.bus.faults import crash_point
from propdesk.bus.streams import ensure_consumer
from propdesk.db.session import context_args, context_sql, tenant_transaction
from propdesk.events.envelope import Envelope
from propdesk.settings import Settings
from propdesk.telemetry.propagation import extract
from propdesk.tenancy.context import TenantContext, system_context, use_context

log = logging.getLogger("propdesk.bus.consumer")
tracer = trace.get_tracer("propdesk.bus")

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
# The new events of one transaction (one tenant, stream order), applied at once.
BatchHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]
LaneKey = Callable[[Envelope], Hashable]


class PermanentError(Exception):
    """The event can never be applied (bad data, unknown reference): dead-letter it now."""


def by_tenant(env: Envelope) -> Hashable:
    return env.tenant_id


def by_project(env: Envelope) -> Hashable:
    """Events of one project stay in order (and a project-less event with its tenant's)."""
    return env.project_id or env.tenant_id


@dataclass(frozen=True)
class Consumer:
    name: str  # durable consumer name, also the inbox key
    schema: str  # the owning service's schema (inbox and dead_letters live there)
    subjects: list[str]
    handler: Handler
    batch: int = 64
    description: str = ""
    event_types: frozenset[str] = field(default_factory=frozenset)
    # Up to this many events share a transaction, grouped into runs of one tenant each
    # (1: one transaction each).
    per_transaction: int = 1
    # Lanes applied concurrently, each on its own connection; `lane_key` says what must stay
    # in order (same key, same lane, stream order). Events of different tenants in one lane
    # may be applied in either order: no tenant's order depends on another's.
    lanes: int = 1
    lane_key: LaneKey = by_tenant
    # Applies the new events of a tenant's run at once instead of `handler` for each;
    # `handler` stays the one-event path (`ConsumerRunner.apply`, and a batch that failed).
    batch_handler: BatchHandler | None = None
    # After a fetch that did not fill `batch`, wait this long and take what came meanwhile:
    # fewer, larger transactions, for a consumer whose cost matters more than its delay.
    linger_seconds: float = 0.0
    # Its transactions use generic plans (`plan_cache_mode`, set with the tenant context):
    # for a hot consumer whose statements are key lookups with one right plan each. Left
    # to choose, the planner keeps planning a statement afresh for every event when its
    # estimates for the values at hand (a small tenant beside a big one, a NULL that
    # drops a branch) come out below its generic plan's.
    generic_plans: bool = False


@dataclass(slots=True)
class Delivery:
    msg: Msg
    env: Envelope
    deliveries: int


class _GroupFailed(Exception):
    """A transaction of several events failed; `index` is the event whose handler raised
    (None when no single event is to blame, e.g. the batch handler or the commit)."""

    def __init__(self, index: int | None, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.index = index
        self.cause = cause


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
        # Deliveries after which a failing event is dead-lettered (None: never, it is
        # retried until it works). The server's consumer redelivers without limit.
        limit = settings.consumer_max_deliver
        self.max_deliver: int | None = limit if limit > 0 else None
        self._backoff = list(settings.consumer_backoff_seconds or [1.0])
        s = f'"{consumer.schema}"'
        # The tenant context and the inbox rows of a transaction's events (one tenant) in one
        # round trip: the CTE's set_config calls run when the INSERT reads `ctx`, before any
        # row exists, so the policy's WITH CHECK and every later statement of the
        # transaction see the context (set_config(..., true) lasts until the transaction
        # ends, like apply_context). It returns the ids not applied before (an id repeated
        # in one batch is inserted once).
        plans = (
            ", set_config('plan_cache_mode', 'force_generic_plan', true)"
            if consumer.generic_plans
            else ""
        )
        self._inbox = (
            f"WITH ctx AS (SELECT {context_sql(1)}{plans})"
            f" INSERT INTO {s}.inbox (consumer, event_id, tenant_id, project_id, event_type)"
            " SELECT $6::text, e.id, $7::uuid, e.project_id, e.event_type"
            " FROM ctx, unnest($8::uuid[], $9::uuid[], $10::text[]) AS e(id, project_id,"
            " event_type) ON CONFLICT DO NOTHING RETURNING event_id"
        )
        self._actor = f"consumer:{consumer.name}"
        # An event already dead-lettered by this consumer and not yet replayed keeps its one
        # row (the unique index `dead_letters_once`, `propdesk.bus.tables`): the delivery
        # after a lost terminate, or after a process died before it, adds nothing. No
        # conflict target, so the insert also works where that index is not (yet) built;
        # the table's only other unique key is its generated id.
        self._dead = text(
            f"INSERT INTO {s}.dead_letters (consumer, event_id, tenant_id, project_id, subject,"
            " deliveries, error, data, headers)"
            " VALUES (:consumer, :event_id, :tenant_id, :project_id, :subject, :deliveries,"
            " :error, :data, CAST(:headers AS jsonb))"
            " ON CONFLICT DO NOTHING RETURNING id"
        )
        # The open row the insert met, locked: a replay marking it replayed holds it until
        # its transaction ends (`propdesk.bus.dead_letters`), so this waits for that, and
        # finds no row if the replay marked it (the failure is then a new one).
        self._open_dead = text(
            f"SELECT id FROM {s}.dead_letters WHERE consumer = :consumer"
            " AND event_id = :event_id AND replayed_at IS NULL FOR UPDATE"
        )
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        name = consumer.name
        self._m_handled = metrics.CONSUMER_HANDLED.labels(name)
        self._m_event_age = metrics.CONSUMER_EVENT_AGE.labels(name)
        self._m_duplicates = metrics.CONSUMER_DUPLICATES.labels(name)
        self._m_redeliveries = metrics.CONSUMER_REDELIVERIES.labels(name)
        self._m_dead_lettered = metrics.CONSUMER_DEAD_LETTERED.labels(name)
        self._m_dead_letter_failures = metrics.CONSUMER_DEAD_LETTER_FAILURES.labels(name)
        self._m_unparseable = metrics.CONSUMER_UNPARSEABLE.labels(name)

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
                if c.linger_seconds > 0 and len(msgs) < c.batch:
                    await asyncio.sleep(c.linger_seconds)
                    with contextlib.suppress(Exception):  # nothing more came: fine
                        msgs += await sub.fetch(c.batch - len(msgs), timeout=0.05)
                try:
                    await self.handle_batch(msgs)
                except Exception:
                    # Not expected (each message's failures are handled on its own), but
                    # never a reason to stop consuming: what was not acked comes back after
                    # ack_wait, and the inbox skips whatever of it was committed.
                    log.exception("consumer %s: a batch of %d messages failed", c.name, len(msgs))
                    await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Apply fetched messages: one by one, or by lanes and shared transactions."""
        c = self.consumer
        if c.per_transaction <= 1 and c.lanes <= 1:
            for msg in msgs:
                await self.handle(msg)
            return
        lanes: dict[int, list[Delivery]] = {}
        for msg in msgs:
            d = await self._parse(msg)
            if d is not None:
                lane = hash(c.lane_key(d.env)) % c.lanes if c.lanes > 1 else 0
                lanes.setdefault(lane, []).append(d)
        if len(lanes) == 1:
            await self._apply_lane(next(iter(lanes.values())))
        elif lanes:
            results = await asyncio.gather(
                *(self._apply_lane(ds) for ds in lanes.values()), return_exceptions=True
            )
            for r in results:
                # What a lane did not ack is redelivered after ack_wait, and the inbox
                # skips whatever of it was committed.
                if isinstance(r, Exception):
                    log.error("consumer %s: a lane failed: %r", c.name, r)
                elif isinstance(r, BaseException):
                    raise r

    async def _apply_lane(self, deliveries: list[Delivery]) -> None:
        # Each tenant's events together, in stream order; tenants in the order of their ids,
        # the same in every replica's transactions: a handler's writes are its tenant's rows,
        # so two replicas' transactions over the same tenants take their locks in one order.
        # In the order of first appearance, which differs from batch to batch, each took one
        # tenant's row (a counter of a busy project) and waited for the other's: a deadlock,
        # a second's stall and a batch rolled back and applied again event by event.
        by_tenant: dict[UUID, list[Delivery]] = {}
        for d in deliveries:
            by_tenant.setdefault(d.env.tenant_id, []).append(d)
        ordered = [d for tenant in sorted(by_tenant) for d in by_tenant[tenant]]
        size = max(1, self.consumer.per_transaction)
        for start in range(0, len(ordered), size):
            await self._apply_group(ordered[start : start + size])

    async def _apply_group(self, group: Sequence[Delivery]) -> None:
        c = self.consumer
        if not group:
            return
        if len(group) == 1:
            await self._handle_parsed(group[0])
            return
        spans = [self._start_span(d) for d in group]
        try:
            applied = await self._apply_together(group, spans)
        except _GroupFailed as failed:
            for span in spans:
                span.set_attribute("propdesk.batch_rolled_back", True)
                span.end()
            # Under the failing event's tenant (or the group's, if it has only one).
            if failed.index is not None:
                tenant: UUID | None = group[failed.index].env.tenant_id
            else:
                tenants = {d.env.tenant_id for d in group}
                tenant = tenants.pop() if len(tenants) == 1 else None
            with self._log_context(tenant):
                log.info(
                    "consumer %s: a transaction of %d events failed (%r); applying them apart",
                    c.name,
                    len(group),
                    failed.cause,
                )
            if failed.index is None:
                for d in group:
                    await self._handle_parsed(d)
            else:
                await self._apply_group(group[: failed.index])
                await self._handle_parsed(group[failed.index])
                await self._apply_group(group[failed.index + 1 :])
            return
        try:
            crash_point("consumer.before_ack")
            for d, span, was_new in zip(group, spans, applied, strict=True):
                try:
                    await d.msg.ack()
                except Exception as exc:  # committed: a redelivery is skipped by the inbox
                    with self._log_context(d.env.tenant_id):
                        log.warning("consumer %s: ack of %s failed: %r", c.name, d.env.id, exc)
                self._count_applied(d.env, was_new, span)
        finally:
            for span in spans:
                span.end()

    async def _apply_together(self, group: Sequence[Delivery], spans: list[Span]) -> list[bool]:
        """One transaction for the events of `group` (runs of one tenant each, as
        `_apply_lane` orders them): which of them were new."""
        applied: list[bool] = []
        try:
            with trace.use_span(spans[0], end_on_exit=False):
                async with self.sessions() as session, session.begin():
                    for start, stop in _tenant_runs(group):
                        applied += await self._apply_run(session, group, start, stop, spans)
        except _GroupFailed:
            raise
        except Exception as exc:  # the commit, say: no single event is to blame
            raise _GroupFailed(None, exc) from exc
        return applied

    async def _apply_run(
        self,
        session: AsyncSession,
        group: Sequence[Delivery],
        start: int,
        stop: int,
        spans: list[Span],
    ) -> list[bool]:
        """Events `group[start:stop]`, all of one tenant, under that tenant's context: which
        of them were new. A handler's failure is a `_GroupFailed` naming its event."""
        c = self.consumer
        envs = [d.env for d in group[start:stop]]
        ctx = TenantContext.for_tenant(envs[0].tenant_id, actor=self._actor)
        # The run's own statements belong to the trace of its first event, not to another
        # tenant's: each run's context and telemetry are its tenant's.
        with use_context(ctx), trace.use_span(spans[start], end_on_exit=False):
            inserted = await self._record_in_inbox(session, ctx, envs)
            new: list[bool] = []
            for e in envs:
                new.append(e.id in inserted)
                inserted.discard(e.id)  # a repeat of the id in this batch is a duplicate
            if c.batch_handler is not None:
                if fresh := [e for e, n in zip(envs, new, strict=True) if n]:
                    await c.batch_handler(session, fresh)
            else:
                for i, (e, n) in enumerate(zip(envs, new, strict=True), start):
                    if not n:
                        continue
                    try:
                        with trace.use_span(spans[i], end_on_exit=False):
                            await c.handler(session, e)
                    except Exception as exc:
                        raise _GroupFailed(i, exc) from exc
            if session.new or session.dirty or session.deleted:
                # ORM changes are written under this run's tenant context, not the next's.
                await session.flush()
        return new

    def _start_span(self, d: Delivery) -> Span:
        """The event's consume span, a child of its producer's span (W3C headers)."""
        return tracer.start_span(
            f"consume {d.env.type}",
            context=extract(dict(d.msg.headers or {})),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.consumer.group.name": self.consumer.name,
                "messaging.message.id": str(d.env.id),
                "propdesk.tenant_id": str(d.env.tenant_id),
                "messaging.nats.deliveries": d.deliveries,
            },
        )

    async def _parse(self, msg: Msg) -> Delivery | None:
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        if deliveries > 1:
            self._m_redeliveries.inc()
        try:
            env = Envelope.model_validate_json(msg.data)
        except ValidationError as exc:
            self._m_unparseable.inc()
            error = f"unparseable envelope: {exc}"
            # The relay's `Nats-Msg-Id` is the event id: with it, a message that comes back
            # (a lost terminate) finds its open dead letter like any other event's.
            if await self._dead_letter_and_term(
                msg, None, deliveries, error, event_id=_message_event_id(msg)
            ):
                log.warning(
                    "consumer %s: unparseable message on %s dead-lettered: %s",
                    self.consumer.name,
                    msg.subject,
                    error[:500],
                )
            return None
        if msg.subject != env.subject:
            # The subject is what NATS lets only the producing service publish on
            # (`deploy/nats/auth.conf`); an envelope of another type, tenant or project
            # under it is applied by nobody.
            # Recorded without the event id it claims: the row must not take the place of
            # the real event's dead letter (`dead_letters_once`) should that one fail.
            self._m_unparseable.inc()
            error = (
                f"subject mismatch: the envelope (event {env.id}, {env.type}, tenant"
                f" {env.tenant_id}) belongs on {env.subject}"
            )
            if await self._dead_letter_and_term(msg, None, deliveries, error):
                log.warning(
                    "consumer %s: event %s on %s dead-lettered: %s",
                    self.consumer.name,
                    env.id,
                    msg.subject,
                    error,
                )
            return None
        return Delivery(msg, env, deliveries)

    async def handle(self, msg: Msg) -> None:
        d = await self._parse(msg)
        if d is not None:
            await self._handle_parsed(d)

    async def _handle_parsed(self, d: Delivery) -> None:
        """Apply one event, then ack, nak with backoff, or dead-letter and terminate it.
        Raises nothing but cancellation: whatever goes wrong, the message either settles or
        comes back."""
        msg, env, deliveries = d.msg, d.env, d.deliveries
        ctx = TenantContext.for_tenant(env.tenant_id, actor=self._actor)
        # The event's tenant context lasts through the logs of its failures, not only its
        # transaction.
        with use_context(ctx), trace.use_span(self._start_span(d), end_on_exit=True) as span:
            try:
                applied = await self._apply(env, ctx)
            except PermanentError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                if await self._dead_letter_and_term(msg, env, deliveries, f"permanent: {exc}"):
                    log.warning(
                        "consumer %s: event %s dead-lettered: permanent: %s",
                        self.consumer.name,
                        env.id,
                        exc,
                    )
                return
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                if self.max_deliver is not None and deliveries >= self.max_deliver:
                    if await self._dead_letter_and_term(msg, env, deliveries, repr(exc)):
                        log.error(
                            "consumer %s: event %s failed %d times, dead-lettered: %r",
                            self.consumer.name,
                            env.id,
                            deliveries,
                            exc,
                        )
                else:
                    delay = self._delay(deliveries)
                    log.warning(
                        "consumer %s: event %s failed (delivery %d), retry in %ss: %r",
                        self.consumer.name,
                        env.id,
                        deliveries,
                        delay,
                        exc,
                    )
                    await self._settle(msg.nak(delay=delay), "nak", env)
                return
            crash_point("consumer.before_ack")
            # Committed: if the ack is lost, the redelivery is skipped by the inbox.
            await self._settle(msg.ack(), "ack", env)
            self._count_applied(env, applied, span)

    def _count_applied(self, env: Envelope, was_new: bool, span: Span) -> None:
        """An acknowledged event: handled (and how old it was by then), or a duplicate the
        inbox skipped."""
        if was_new:
            self.handled += 1
            self._m_handled.inc()
            self._m_event_age.observe(time.time() - env.occurred_at.timestamp())
        else:
            self.duplicates += 1
            self._m_duplicates.inc()
            span.set_attribute("propdesk.duplicate", True)

    def _delay(self, deliveries: int) -> float:
        """The nak delay after failed delivery number `deliveries` (the last step repeats)."""
        return self._backoff[max(0, min(deliveries, len(self._backoff)) - 1)]

    async def _dead_letter_and_term(
        self,
        msg: Msg,
        env: Envelope | None,
        deliveries: int,
        error: str,
        *,
        event_id: UUID | None = None,
    ) -> bool:
        """Record the message in dead_letters, then terminate it; True if recorded. If the
        dead letter cannot be written, the message is nak'ed with the backoff and comes back
        (if the nak is lost too, after ack_wait): it is never terminated unrecorded."""
        try:
            recorded = await self._dead_letter(msg, env, deliveries, error, event_id)
        except Exception as exc:
            self._m_dead_letter_failures.inc()
            delay = self._delay(deliveries)
            log.error(
                "consumer %s: event %s could not be dead-lettered (delivery %d), retry in"
                " %ss: %r (its failure: %s)",
                self.consumer.name,
                env.id if env else f"on {msg.subject}",
                deliveries,
                delay,
                exc,
                error[:500],
            )
            await self._settle(msg.nak(delay=delay), "nak", env)
            return False
        if recorded:
            self.dead_lettered += 1
            self._m_dead_lettered.inc()
        else:
            log.warning(
                "consumer %s: event %s was already dead-lettered (a terminate was lost, or the"
                " process died before it): no second row; terminating it now",
                self.consumer.name,
                env.id if env else event_id or f"on {msg.subject}",
            )
        # If the term is lost, the message comes back, fails again and finds its dead letter.
        await self._settle(msg.term(), "term", env)
        return True

    async def _settle(self, reply: Awaitable[None], what: str, env: Envelope | None) -> None:
        """Await an ack, nak or term; a failure (NATS gone) is logged, not raised: an
        unsettled message comes back after ack_wait."""
        try:
            await reply
        except Exception as exc:
            log.warning(
                "consumer %s: %s of %s failed: %r",
                self.consumer.name,
                what,
                env.id if env else "a message",
                exc,
            )

    def _log_context(
        self, tenant_id: UUID | None
    ) -> contextlib.AbstractContextManager[TenantContext | None]:
        """The tenant context for a log line outside an event's own handling."""
        if tenant_id is None:
            return contextlib.nullcontext()
        return use_context(TenantContext.for_tenant(tenant_id, actor=self._actor))

    async def apply(self, env: Envelope) -> bool:
        """Apply one event exactly once: one transaction holding the inbox row and the
        handler's writes. False if this consumer had already applied it."""
        ctx = TenantContext.for_tenant(env.tenant_id, actor=self._actor)
        with use_context(ctx):
            return await self._apply(env, ctx)

    async def _apply(self, env: Envelope, ctx: TenantContext) -> bool:
        async with self.sessions() as session, session.begin():
            if not await self._record_in_inbox(session, ctx, [env]):
                return False
            await self.consumer.handler(session, env)
            return True

    async def _record_in_inbox(
        self, session: AsyncSession, ctx: TenantContext, envs: Sequence[Envelope]
    ) -> set[UUID]:
        """Set the tenant context and insert the inbox rows: the first statement of the
        transaction, run through SQLAlchemy so that its transaction has begun before any
        statement on the driver connection underneath. The ids not applied before."""
        conn = await session.connection()
        # Rows in the order of their ids, the same in every replica: two transactions
        # inserting the same ids in opposite orders (an event redelivered to one replica
        # while another still holds it) each waited on a row the other had inserted.
        ordered = sorted(envs, key=lambda e: e.id)
        rows = await conn.exec_driver_sql(
            self._inbox,
            (
                *context_args(ctx),
                self.consumer.name,
                ctx.tenant_id,
                [e.id for e in ordered],
                [e.project_id for e in ordered],
                [e.type for e in ordered],
            ),
        )
        return {r[0] for r in rows}

    async def _dead_letter(
        self,
        msg: Msg,
        env: Envelope | None,
        deliveries: int,
        error: str,
        event_id: UUID | None = None,
    ) -> bool:
        """Insert the dead letter and commit; False if the event already had an open one.

        The open one the insert meets may be in a replay's hands, not yet marked replayed
        while the replay's transaction runs (this delivery may be the replayed message,
        failing again): the insert then waits for that transaction by locking the row,
        and tries again if the row is no longer open. Without that wait the failure was
        terminated as a duplicate and the replay then closed the only row: lost."""
        crash_point("consumer.before_dead_letter")
        row = {
            "consumer": self.consumer.name,
            "event_id": env.id if env else event_id,
            "tenant_id": env.tenant_id if env else None,
            "project_id": env.project_id if env else None,
            "subject": msg.subject,
            "deliveries": deliveries,
            "error": error[:2000],
            "data": msg.data,
            "headers": orjson.dumps(dict(msg.headers or {})).decode(),
        }
        recorded = False
        async with tenant_transaction(self.sessions, system_context("dead-letter")) as session:
            for _ in range(3):
                if (await session.execute(self._dead, row)).first() is not None:
                    recorded = True
                    break
                if row["event_id"] is None:
                    break  # no open-row index for these: never a conflict
                open_row = await session.execute(
                    self._open_dead, {"consumer": row["consumer"], "event_id": row["event_id"]}
                )
                if open_row.first() is not None:
                    break  # really open: a lost terminate, or a replay that rolled back
        crash_point("consumer.after_dead_letter")
        return recorded


def _tenant_runs(group: Sequence[Delivery]) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive events of one tenant."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(group) + 1):
        if i == len(group) or group[i].env.tenant_id != group[start].env.tenant_id:
            runs.append((start, i))
            start = i
    return runs


def _message_event_id(msg: Msg) -> UUID | None:
    """The event id a message's headers carry: the relay's `Nats-Msg-Id`, or a replay's
    `Propdesk-Event-Id` (`propdesk.bus.dead_letters`), if it is one."""
    headers = msg.headers or {}
    for name in ("Nats-Msg-Id", "Propdesk-Event-Id"):
        try:
            return UUID(headers.get(name, ""))
        except ValueError:
            continue
    return None
