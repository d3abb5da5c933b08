"""The event bus: transactional outbox, relay to JetStream, durable consumers with an inbox."""

from propdesk.bus.consumer import Consumer, PermanentError
from propdesk.bus.outbox import Outbox

__all__ = ["Consumer", "Outbox", "PermanentError"]
