"""A fetched JetStream message as `ConsumerRunner.handle_batch` sees it, for tests that
hand the runner a batch directly (the database is real; the transport is not the point):
it records whether the runner acked, nak'ed or terminated it."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from propdesk.events.envelope import Envelope


@dataclass
class _Meta:
    num_delivered: int = 1


@dataclass
class FetchedMessage:
    """What `ConsumerRunner.handle_batch` uses of a fetched JetStream message."""

    env: Envelope
    deliveries: int = 1
    outcome: list[str] = field(default_factory=list)
    headers: dict[str, str] | None = None
    raw: bytes | None = None  # what arrived instead of the envelope (unparseable data)
    on_subject: str | None = None  # the subject it arrived on, if not the envelope's

    @property
    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return orjson.dumps(self.env.model_dump(mode="json"))

    @property
    def metadata(self) -> _Meta:
        return _Meta(self.deliveries)

    @property
    def subject(self) -> str:
        return self.on_subject or self.env.subject

    async def ack(self) -> None:
        self.outcome.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.outcome.append("nak")

    async def term(self) -> None:
        self.outcome.append("term")
