"""JetStream connection, stream and durable consumer provisioning (idempotent)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from propdesk.settings import Settings

log = logging.getLogger("propdesk.bus")


async def connect(settings: Settings, name: str, **kwargs) -> NATS:
    """A NATS connection that keeps reconnecting forever: the outbox holds events meanwhile.
    `kwargs` override (a one-off command passes `allow_reconnect=False` to fail fast)."""
    # A comma-separated list seeds a cluster connection (nats://n1:4222,nats://n2:4222).
    servers = [u.strip() for u in settings.nats_url.split(",") if u.strip()]
    options = {
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "inbox_prefix": inbox_prefix(servers[0]) if servers else "_INBOX",
        **kwargs,
    }
    return await nats.connect(servers, name=name, **options)


def inbox_prefix(url: str) -> str:
    """`_INBOX_<user>` for a URL with a NATS user, `_INBOX` without. JetStream's answers,
    PubAcks and fetched messages come back on the client's inboxes: a user of its own
    prefix may be allowed to read those and no one else's (`deploy/nats/auth.conf`)."""
    user = urlsplit(url if "://" in url else f"nats://{url}").username
    return f"_INBOX_{user}" if user else "_INBOX"


def stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream_name,
        subjects=[settings.stream_subjects],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        max_age=settings.stream_max_age_days * 86400,
        duplicate_window=settings.stream_duplicate_window_seconds,
        discard=DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    config = stream_config(settings)
    try:
        await js.stream_info(settings.stream_name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", settings.stream_name)
        return
    await js.update_stream(config)


# The server never gives up on a message on its own: it would stop redelivering after
# `max_deliver` tries whether or not the runner had recorded a dead letter (a database
# outage, a kill before the commit: the event lost for good). The runner decides instead,
# from `num_delivered`, and terminates a message only after its dead letter committed.
UNLIMITED_DELIVERIES = -1


def consumer_config(settings: Settings, durable: str, subjects: list[str]) -> ConsumerConfig:
    # No server-side `backoff`: it replaces ack_wait, so a handler slower than the first
    # backoff step would be redelivered while still running. The runner naks with the
    # configured delay instead, and ack_wait bounds a hung handler.
    # `PROPDESK_CONSUMER_MAX_DELIVER` is the runner's limit, not the server's.
    return ConsumerConfig(
        name=durable,
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=settings.consumer_ack_wait_seconds,
        max_deliver=UNLIMITED_DELIVERIES,
        filter_subjects=subjects if len(subjects) > 1 else None,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        max_ack_pending=1000,
    )


async def ensure_consumer(
    js: JetStreamContext, settings: Settings, durable: str, subjects: list[str]
) -> None:
    config = consumer_config(settings, durable, subjects)
    try:
        await js.consumer_info(settings.stream_name, durable)
    except NotFoundError:
        await js.add_consumer(settings.stream_name, config=config)
        return
    # add_consumer with the same name updates the mutable fields of an existing consumer
    # (ack_wait, max_deliver, max_ack_pending, filter subjects, ...): a durable created with
    # an older config gets this one when its service starts.
    await js.add_consumer(settings.stream_name, config=config)
