"""An Open311 `POST requests` as a complaint.

Input is the spec's form fields (or the same names in a JSON object; attributes either as
`attribute[code]` keys or as an `attribute` object). The result is the body of the native
complaint API (`intake.api.schemas.ComplaintIn` field names), so Open311 complaints go
through exactly the same recording flow as /v1/complaints.

Field mapping:
  jurisdiction_id → project (project code or id); optional when the API key serves one project
  service_code → category (the caller's choice wins over keyword classification)
  description → content;  attribute[demand] → demand
  first_name/last_name → complainant name (family name first for Chinese names);
  phone, email → complainant phone, email
  address_id → unit id;  attribute[building] + attribute[room] → unit by text
  address_string → place;  lat/long → lat/long (WGS84, both or neither)
  media_url → attachment (photo);  device_id → device_id
  attribute[ticket_id] (else a caller-sent service_request_id) → external reference
  attribute[channel] → channel (default call_center); attribute[received_at|occurred_at|receiver]
  attribute[second_complaint] (true/false), attribute[previous_case] → second complaint
  attribute[forwarded_result] (dissatisfied; only with a forwarding channel) → forwarded_result
account_id is echoed back in the response, not stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from intake.domain.vocabulary import CALLBACK_FORWARDERS, Channel
from intake.open311.catalog import ATTRIBUTE_CODES, YES_NO_ATTRIBUTE_CODES, category_of
from intake.open311.errors import Open311Error, Open311Errors, bad_request
from propdesk.service.text import NO_NUL_MESSAGE, has_nul

_ATTRIBUTE_KEY = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")
_CJK = re.compile(r"[\u3400-\u9fff]")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

KNOWN_FIELDS = frozenset(
    {
        "api_key",
        "jurisdiction_id",
        "service_code",
        "lat",
        "long",
        "address_string",
        "address_id",
        "email",
        "device_id",
        "account_id",
        "first_name",
        "last_name",
        "phone",
        "description",
        "media_url",
        "service_request_id",
        "attribute",
    }
)
MAX_PLACE = 200
DEFAULT_CHANNEL = Channel.CALL_CENTER


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated Open311 service request, before the project is resolved."""

    jurisdiction_id: str | None
    complaint: dict[str, Any]  # ComplaintIn fields, except `project`
    account_id: str | None
    idempotency_seed: str | None  # the caller's ticket id, when given


def repeated_fields(items: Iterable[tuple[str, Any]]) -> list[str]:
    """The keys given more than once in one source (the query, or the form): every key
    but a multi-valued attribute's (`attribute[code][]`) takes one value."""
    seen: set[str] = set()
    twice: dict[str, None] = {}
    for key, _ in items:
        m = _ATTRIBUTE_KEY.match(key)
        if m and m.group(2):
            continue
        if key in seen:
            twice[key] = None
        seen.add(key)
    return list(twice)


def flatten(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Form items (repeated keys allowed) or JSON object items → one dict whose
    `attribute` value maps each attribute code to a string or a list of strings."""
    out: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, value in items:
        m = _ATTRIBUTE_KEY.match(key)
        if m:
            code, multi = m.group(1), m.group(2)
            if multi:
                attributes.setdefault(code, []).append(value)
            else:
                attributes[code] = value
        elif key == "attribute" and isinstance(value, Mapping):
            attributes.update(value)
        else:
            out[key] = value
    if attributes:
        out["attribute"] = attributes
    return out


def _text(data: Mapping[str, Any], name: str, errors: list[Open311Error]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.append(bad_request(f"{name}: must be a string"))
        return None
    text = str(value).strip()
    if has_nul(text):
        errors.append(bad_request(f"{name}: {NO_NUL_MESSAGE}"))
        return None
    return text or None


def _coordinate(
    raw: str | None, name: str, limit: float, errors: list[Open311Error]
) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        errors.append(bad_request(f"{name}: must be a decimal number (WGS84)"))
        return None
    if not math.isfinite(value) or abs(value) > limit:
        errors.append(bad_request(f"{name}: must be between -{limit:g} and {limit:g}"))
        return None
    return value


def _datetime(raw: str | None, name: str, errors: list[Open311Error]) -> str | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(bad_request(f"{name}: must be an ISO 8601 date-time"))
        return None
    if value.tzinfo is None:
        errors.append(bad_request(f"{name}: must include a UTC offset"))
        return None
    return value.isoformat()


def person_name(first: str | None, last: str | None) -> str | None:
    """'张' + '三' → '张三' (Chinese: family name first, no space); 'Ann', 'Lee' → 'Ann Lee'."""
    if first and last:
        if _CJK.search(first) or _CJK.search(last):
            return f"{last}{first}"
        return f"{first} {last}"
    return first or last


def _flag(raw: str | None, name: str, errors: list[Open311Error]) -> bool:
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() not in _FALSE:
        errors.append(bad_request(f"{name}: must be true or false"))
    return False


def parse_submission(data: Mapping[str, Any]) -> Submission:
    """Validate and map an Open311 POST. Raises `Open311Errors` listing every problem."""
    errors: list[Open311Error] = []
    text = {name: _text(data, name, errors) for name in KNOWN_FIELDS - {"attribute"}}
    raw_attributes = data.get("attribute") or {}
    if not isinstance(raw_attributes, Mapping):
        errors.append(bad_request("attribute: must be an object of attribute codes"))
        raw_attributes = {}
    attributes: dict[str, str] = {}
    for code, value in raw_attributes.items():
        if value is None or value == "" or value == []:
            # The spec: "A null parameter should be treated as equivalent to a non-declared
            # parameter"; an empty one too, whatever its code.
            continue
        if code not in ATTRIBUTE_CODES:
            errors.append(
                bad_request(
                    f"attribute[{code}]: not an attribute of this service "
                    f"(known: {', '.join(sorted(ATTRIBUTE_CODES))})"
                )
            )
            continue
        if isinstance(value, list):
            if len(value) != 1:
                errors.append(bad_request(f"attribute[{code}]: takes a single value"))
                continue
            value = value[0]
        if isinstance(value, bool) and code in YES_NO_ATTRIBUTE_CODES:
            value = "true" if value else "false"  # JSON's own true/false, as the list's keys
        if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.append(bad_request(f"attribute[{code}]: must be a string"))
            continue
        if has_nul(str(value)):
            errors.append(bad_request(f"attribute[{code}]: {NO_NUL_MESSAGE}"))
            continue
        if str(value).strip():
            attributes[code] = str(value).strip()

    service_code = text["service_code"]
    if service_code is None:
        errors.append(bad_request("service_code: is required"))
    elif category_of(service_code) is None:
        errors.append(Open311Error(404, f"service_code: {service_code!r} not found"))
    description = text["description"]
    if description is None:
        errors.append(bad_request("description: is required"))

    lat = _coordinate(text["lat"], "lat", 90, errors)
    long = _coordinate(text["long"], "long", 180, errors)
    if (text["lat"] is None) != (text["long"] is None):
        errors.append(bad_request("lat/long: give both or neither"))

    channel = DEFAULT_CHANNEL
    if "channel" in attributes:
        try:
            channel = Channel(attributes["channel"])
        except ValueError:
            errors.append(
                bad_request(
                    f"attribute[channel]: unknown channel {attributes['channel']!r} "
                    f"(one of: {', '.join(c.value for c in Channel)})"
                )
            )

    unit: dict[str, Any] | None = None
    if text["address_id"] is not None:
        try:
            unit = {"id": str(UUID(text["address_id"]))}
        except ValueError:
            errors.append(bad_request("address_id: must be a unit id (UUID)"))
    elif "building" in attributes or "room" in attributes:
        if not ("building" in attributes and "room" in attributes):
            errors.append(bad_request("attribute[building]/attribute[room]: give both"))
        else:
            unit = {"building": attributes["building"], "room": attributes["room"]}

    place = text["address_string"]
    if place is not None and len(place) > MAX_PLACE:
        errors.append(bad_request(f"address_string: at most {MAX_PLACE} characters"))

    second = _flag(attributes.get("second_complaint"), "attribute[second_complaint]", errors)
    forwarded_result = attributes.get("forwarded_result")
    if forwarded_result is not None:
        if forwarded_result != "dissatisfied":
            errors.append(bad_request("attribute[forwarded_result]: must be dissatisfied"))
        elif channel not in CALLBACK_FORWARDERS:
            allowed = ", ".join(sorted(c.value for c in CALLBACK_FORWARDERS))
            errors.append(
                bad_request(
                    "attribute[forwarded_result]: only with a forwarding attribute[channel] "
                    f"({allowed})"
                )
            )

    received_at = _datetime(attributes.get("received_at"), "attribute[received_at]", errors)
    occurred_at = _datetime(attributes.get("occurred_at"), "attribute[occurred_at]", errors)

    if errors:
        raise Open311Errors(errors)

    ticket = attributes.get("ticket_id") or text["service_request_id"]
    complainant: dict[str, Any] = {}
    name = person_name(text["first_name"], text["last_name"])
    if name:
        complainant["name"] = name
    if text["phone"]:
        complainant["phone"] = text["phone"]
    if text["email"]:
        complainant["email"] = text["email"]
    complaint: dict[str, Any] = {
        "channel": channel.value,
        "content": description,
        "category": service_code,
        "received_at": received_at,
        "occurred_at": occurred_at,
        "complainant": complainant or None,
        "unit": unit,
        "place": place,
        "lat": lat,
        "long": long,
        "device_id": text["device_id"],
        "second_complaint": second or None,
        "previous_case": attributes.get("previous_case"),
        "forwarded_result": forwarded_result,
        "demand": attributes.get("demand"),
        "receiver": attributes.get("receiver"),
        "attachments": ([{"url": text["media_url"], "kind": "photo"}] if text["media_url"] else []),
        "external_reference": ticket,
    }
    return Submission(
        jurisdiction_id=text["jurisdiction_id"],
        complaint={k: v for k, v in complaint.items() if v is not None},
        account_id=text["account_id"],
        idempotency_seed=ticket,
    )
