"""Open311 errors: a list of {code, description}, code being an HTTP status (spec: "Errors").

Open311 clients parse this shape, not RFC 9457, so the Open311 endpoints answer with it;
every description names the field it is about, by its Open311 name
(`service_code: is required`, `attribute[received_at]: must include a UTC offset`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Native complaint fields (as the recording flow names them) → the Open311 field they came
# from, so an error found downstream still names what the caller sent.
NATIVE_TO_OPEN311: dict[str, str] = {
    "project": "jurisdiction_id",
    "channel": "attribute[channel]",
    "content": "description",
    "category": "service_code",
    "received_at": "attribute[received_at]",
    "occurred_at": "attribute[occurred_at]",
    "complainant.name": "first_name/last_name",
    "complainant.phone": "phone",
    "complainant.email": "email",
    "complainant": "first_name/last_name/phone/email",
    "unit.id": "address_id",
    "unit.building": "attribute[building]",
    "unit.room": "attribute[room]",
    "unit": "address_id or attribute[building]/attribute[room]",
    "place": "address_string",
    "lat": "lat",
    "long": "long",
    "device_id": "device_id",
    "second_complaint": "attribute[second_complaint]",
    "previous_case": "attribute[previous_case]",
    "forwarded_result": "attribute[forwarded_result]",
    "demand": "attribute[demand]",
    "receiver": "attribute[receiver]",
    "attachments": "media_url",
    "external_reference": "attribute[ticket_id]",
}


# How the OpenAPI document describes these answers (the router's 4XX and 5XX).
OPENAPI_RESPONSE: dict[str, Any] = {
    "description": "Open311's error list, in the requested format: each `description` "
    "names the field at fault by its Open311 name; `code` is the HTTP status.",
    "content": {
        "application/json": {
            "schema": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "description"],
                    "properties": {
                        "code": {"type": "integer", "examples": [400]},
                        "description": {
                            "type": "string",
                            "examples": ["service_code: is required"],
                        },
                    },
                },
            }
        },
        "text/xml": {
            "schema": {"type": "string"},
            "example": "<errors><error><code>400</code>"
            "<description>service_code: is required</description></error></errors>",
        },
    },
}


@dataclass(frozen=True, slots=True)
class Open311Error:
    code: int
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "description": self.description}


def bad_request(description: str) -> Open311Error:
    return Open311Error(400, description)


class Open311Errors(Exception):
    """One or more errors answered together with one HTTP status."""

    def __init__(self, errors: Sequence[Open311Error], headers: Mapping[str, str] | None = None):
        super().__init__("; ".join(e.description for e in errors))
        self.errors = list(errors)
        self.headers = dict(headers) if headers else None

    @property
    def status(self) -> int:
        # A malformed request is reported as such even when it also names an unknown
        # service: fixing the 400s is what the caller must do first.
        codes = [e.code for e in self.errors]
        return 400 if 400 in codes else codes[0]


def open311_field(native: str) -> str:
    """'body.unit.id' or ('body', 'unit', 'id') style names → the Open311 field name; a
    query parameter ('query.jurisdiction_id') is named as the spec names it."""
    path = native.removeprefix("body.").removeprefix("query.")
    parts = path.split(".")
    # pydantic adds list indexes and union branch names; match the longest known prefix.
    for n in range(len(parts), 0, -1):
        key = ".".join(p for p in parts[:n] if not p.isdigit())
        if key in NATIVE_TO_OPEN311:
            return NATIVE_TO_OPEN311[key]
    return path


def from_field_errors(
    status: int, detail: str | None, field_errors: Iterable[Mapping[str, Any]] | None
) -> Open311Errors:
    """A problem+json style refusal (status, detail, [{field, rule, message}]) from the
    recording flow, in Open311 terms. 422 becomes 400: Open311 clients know 400."""
    code = 400 if status == 422 else status
    out = [
        Open311Error(code, f"{open311_field(str(e.get('field', '')))}: {e.get('message', '')}")
        for e in field_errors or ()
    ]
    if not out:
        out = [Open311Error(code, detail or "request refused")]
    return Open311Errors(out)
