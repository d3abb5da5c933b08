"""JSON and XML bodies in the shapes of the GeoReport v2 spec.

JSON: a list of objects (service list, requests, tokens, errors) or one object (service
definition). XML: the same data under the spec's root and item elements:
`services/service`, `service_definition` (attributes/attribute, values/value),
`service_requests/request`, `errors/error`. Booleans are `true`/`false`, None is an
empty element, datetimes are ISO 8601 with their UTC offset.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from intake.open311.errors import Open311Error


class Format(StrEnum):
    JSON = "json"
    XML = "xml"

    @property
    def media_type(self) -> str:
        # The spec's Format Support names the charset for both.
        return (
            "application/json; charset=utf-8" if self is Format.JSON else "text/xml; charset=utf-8"
        )


def parse_format(raw: str) -> Format | None:
    try:
        return Format(raw.lower())
    except ValueError:
        return None


# Characters XML 1.0 cannot carry at all (ElementTree would write them and break the
# document); complaint text pasted from other systems does contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# Child element name for each list-valued field in XML.
_XML_LIST_ITEMS = {"attributes": "attribute", "values": "value"}


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return _NOT_XML.sub("\ufffd", str(value))


def _append(parent: ET.Element, name: str, value: Any) -> None:
    el = ET.SubElement(parent, name)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _append(el, k, v)
    elif isinstance(value, list | tuple):
        child = _XML_LIST_ITEMS.get(name, "item")
        for item in value:
            _append(el, child, item)
    else:
        el.text = _scalar(value)


def to_xml(
    root: str, item: str | None, data: Sequence[Mapping[str, Any]] | Mapping[str, Any]
) -> bytes:
    """`root` holding one `item` element per mapping of `data`; with `item` None, `data` is
    one mapping whose fields go straight under `root`."""
    top = ET.Element(root)
    if item is None:
        assert isinstance(data, Mapping)
        for k, v in data.items():
            _append(top, k, v)
    else:
        for entry in data:
            assert isinstance(entry, Mapping)
            _append(top, item, entry)
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="unicode").encode()
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def to_json(data: Any) -> bytes:
    return orjson.dumps(data, default=_json_default)


def render(
    fmt: Format,
    root: str,
    item: str | None,
    data: Sequence[Mapping[str, Any]] | Mapping[str, Any],
) -> bytes:
    if fmt is Format.JSON:
        return to_json(list(data) if item is not None else data)
    return to_xml(root, item, data)


def render_errors(fmt: Format, errors: Sequence[Open311Error]) -> bytes:
    return render(fmt, "errors", "error", [e.as_dict() for e in errors])
