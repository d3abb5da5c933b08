"""All event payload models, by (type, schema_version)."""

from __future__ import annotations

import importlib
import pkgutil

from propdesk.events import contracts
from propdesk.events.envelope import Envelope, EventPayload

REGISTRY: dict[tuple[str, int], type[EventPayload]] = {}


def _load() -> None:
    for mod in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"{contracts.__name__}.{mod.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, EventPayload)
                and obj is not EventPayload
                and hasattr(obj, "event_type")
            ):
                key = (obj.event_type, obj.schema_version)
                if key in REGISTRY and REGISTRY[key] is not obj:
                    raise RuntimeError(f"event {key} defined twice")
                REGISTRY[key] = obj


def payload_model(event_type: str, schema_version: int) -> type[EventPayload]:
    try:
        return REGISTRY[(event_type, schema_version)]
    except KeyError:
        raise KeyError(f"unknown event {event_type} v{schema_version}") from None


def parse_payload(envelope: Envelope) -> EventPayload:
    """The envelope's payload as this version of the contract reads it.

    A tolerant reader: fields this version does not know are left out, so a producer that
    already sends a new optional field (a compatible change within a schema version, e.g.
    during a rolling deployment) is read by consumers that do not know it yet, instead of
    being refused and dead-lettered. Building a payload in code stays strict (extra
    fields are an error there), and a breaking change is a new schema_version."""
    model = payload_model(envelope.type, envelope.schema_version)
    payload = envelope.payload
    known = model.model_fields
    if not payload.keys() <= known.keys():
        payload = {name: value for name, value in payload.items() if name in known}
    return model.model_validate(payload)


_load()
