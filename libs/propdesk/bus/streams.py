"""JetStream connection, stream and durable consumer provisioning (idempotent)."""

from __future__ import annotations

import logging
import re
import ssl
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

from propdesk.settings import SERVICE_NAMES, Settings

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
    if "tls" not in options and (context := tls_context(settings)) is not None:
        options["tls"] = context
    schemes = {urlsplit(u).scheme for u in servers}
    if "tls" in schemes and schemes != {"tls"}:
        # nats-py has one TLS-first setting for the whole connection, reconnects included.
        raise ValueError(
            "PROPDESK_NATS_URL mixes tls:// with other schemes: use tls:// for every server"
            " or for none"
        )
    if schemes == {"tls"}:
        # nats-py takes `tls://` as a wish: it upgrades only when the server's first
        # (plain-text) INFO asks for TLS, so anything answering on the address in plain
        # text would be sent the password. The TLS handshake comes first instead (the
        # servers of deploy/ set `handshake_first`): no byte before the server's
        # certificate is checked.
        options.setdefault("tls_handshake_first", True)
    return await nats.connect(servers, name=name, **options)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The servers' certificates and names checked against `nats_ca_file`
    (PROPDESK_NATS_CA_FILE: the private CA of `deploy/`'s NATS TLS); None without it:
    nats-py then checks a server's certificate against the system's CAs."""
    ca = settings.nats_ca_file
    return ssl.create_default_context(cafile=ca) if ca else None


def inbox_prefix(url: str) -> str:
    """`_INBOX_<user>` for a URL with a NATS user and password, `_INBOX` otherwise (no
    user, or a token: a secret has no place in subjects). JetStream's answers, PubAcks and
    fetched messages come back on the client's inboxes: a user of its own prefix may be
    allowed to read those and no one else's (`deploy/nats/auth.conf`)."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    user = parts.username
    if user and parts.password is not None and re.fullmatch(r"[A-Za-z0-9_-]+", user):
        return f"_INBOX_{user}"
    return "_INBOX"


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


def _stream_differences(have: StreamConfig, want: StreamConfig) -> list[str]:
    fields = ("subjects", "max_age", "duplicate_window", "num_replicas", "storage")
    return [
        f"{f} {getattr(have, f)!r}, expected {getattr(want, f)!r}"
        for f in fields
        if getattr(have, f) != getattr(want, f)
    ]


class BusNotProvisioned(RuntimeError):
    """The stream or a durable is not there, and this process may not create it
    (`bus_provisioning = "operator"`)."""


PROVISION_HINT = (
    "run `python -m propdesk.bus.cli provision` as the NATS user operator"
    " (deploy: the bus-provision job), then start this service again"
)


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the stream; where the operator provisions the bus, only check that
    it is there (`BusNotProvisioned` if not)."""
    if settings.bus_provisioning == "operator":
        try:
            info = await js.stream_info(settings.stream_name)
        except NotFoundError:
            raise BusNotProvisioned(
                f"stream {settings.stream_name} does not exist: {PROVISION_HINT}"
            ) from None
        differs = _stream_differences(info.config, stream_config(settings))
        if differs:
            # The inbox retention this process checked against the stream's max age, and
            # the duplicate window its relay relies on, are this process's settings.
            log.error(
                "stream %s differs from this process's settings (%s): %s",
                settings.stream_name,
                "; ".join(differs),
                PROVISION_HINT,
            )
        return
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
    """Create or update the durable; where the operator provisions the bus, only check that
    it is there (`BusNotProvisioned` if not) and say so if its filters are not this
    release's (the provisioning of this release has not run yet)."""
    if settings.bus_provisioning == "operator":
        try:
            info = await js.consumer_info(settings.stream_name, durable)
        except NotFoundError:
            raise BusNotProvisioned(
                f"durable consumer {durable} does not exist: {PROVISION_HINT}"
            ) from None
        have = sorted(info.config.filter_subjects or [info.config.filter_subject or ""])
        if have != sorted(subjects):
            log.error(
                "durable consumer %s takes %s, this release expects %s: %s",
                durable,
                have,
                sorted(subjects),
                PROVISION_HINT,
            )
        return
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


async def provision(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update the stream and every service's durable consumers (what
    `python -m propdesk.bus.cli provision` does as the NATS user operator, whatever
    `bus_provisioning` says). Returns the durables' names."""
    from propdesk.service.runner import load_spec  # the services' specs, loaded by name

    own = settings.model_copy(update={"bus_provisioning": "service"})
    await ensure_stream(js, own)
    durables = []
    for service in SERVICE_NAMES:
        for consumer in load_spec(service).consumers(None):  # type: ignore[arg-type]
            await ensure_consumer(js, own, consumer.name, consumer.subjects)
            durables.append(consumer.name)
    return durables
