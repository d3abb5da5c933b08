from propdesk.events.envelope import Envelope, EventPayload, new_event, subject_for
from propdesk.events.registry import REGISTRY, parse_payload, payload_model

__all__ = [
    "REGISTRY",
    "Envelope",
    "EventPayload",
    "new_event",
    "parse_payload",
    "payload_model",
    "subject_for",
]
