"""The Open311 service list and service definitions.

One service per complaint category (service_code = category code, e.g. `facility_repair`),
all `realtime` (a service_request_id comes back at once). Keywords are the tenant's
classification keywords for that category, so a caller's search finds what the
classifier would. Every service has the same attributes (metadata=true): the caller's
ticket id, the unit, the complainant's demand, and the receipt times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intake.domain.rules import TenantRules
from intake.domain.vocabulary import CATEGORY_LABELS_EN, CHANNEL_LABELS_ZH, Category, Channel

SERVICE_GROUP = "物业投诉 / Property complaints"


@dataclass(frozen=True, slots=True)
class Attribute:
    code: str
    datatype: str  # string | number | datetime | text | singlevaluelist | multivaluelist
    description: str
    datatype_description: str = ""
    required: bool = False
    values: tuple[tuple[str, str], ...] = ()

    def definition(self, order: int) -> dict[str, Any]:
        return {
            "variable": True,
            "code": self.code,
            "datatype": self.datatype,
            "required": self.required,
            "datatype_description": self.datatype_description or None,
            "order": order,
            "description": self.description,
            "values": [{"key": k, "name": n} for k, n in self.values],
        }


# Channels a partner may say a complaint came through; the call center is the default.
_PARTNER_CHANNELS = (
    Channel.CALL_CENTER,
    Channel.GOVERNMENT,
    Channel.GROUP,
    Channel.QUALITY_DEPT,
    Channel.MEDIA,
    Channel.PHONE,
    Channel.SMS,
    Channel.WECHAT,
    Channel.APP,
    Channel.WEBSITE,
    Channel.EMAIL,
    Channel.LETTER,
)

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "ticket_id",
        "string",
        "Your own ticket id (工单号); recorded as the external reference, and a retried "
        "request with the same ticket id and fields returns the first one's result",
        "up to 200 characters",
    ),
    Attribute(
        "channel",
        "singlevaluelist",
        "How the complaint reached you (投诉来源); default call_center",
        values=tuple((c.value, f"{CHANNEL_LABELS_ZH[c]} ({c.value})") for c in _PARTNER_CHANNELS),
    ),
    Attribute("building", "string", "Building of the complainant's unit (楼栋)"),
    Attribute("room", "string", "Room of the complainant's unit (房号); give it with building"),
    Attribute("demand", "text", "What the complainant asks for (要求)"),
    Attribute(
        "received_at",
        "datetime",
        "When you received the complaint (接诉时间); default now",
        "ISO 8601 with a UTC offset, e.g. 2026-11-26T09:30:00+08:00",
    ),
    Attribute(
        "occurred_at",
        "datetime",
        "When the matter happened (发生时间)",
        "ISO 8601 with a UTC offset",
    ),
    Attribute("receiver", "string", "Who took the complaint at your end (接诉人)"),
    Attribute(
        "second_complaint",
        "singlevaluelist",
        "The complainant is unhappy with how an earlier complaint on this matter was "
        "handled (二次投诉); graded complex, the third time major",
        values=(("true", "是 yes"), ("false", "否 no")),
    ),
    Attribute(
        "previous_case",
        "string",
        "The earlier complaint on this matter: its service_request_id or reference",
    ),
    Attribute(
        "forwarded_result",
        "singlevaluelist",
        "Your own callback's result, when you forward it (call center, group, quality "
        "department only); dissatisfied (不满意) is a major complaint",
        values=(("dissatisfied", "不满意 dissatisfied"),),
    ),
)

ATTRIBUTE_CODES = frozenset(a.code for a in ATTRIBUTES)
# Attributes whose list is true/false: a JSON submission may give them as JSON booleans.
YES_NO_ATTRIBUTE_CODES = frozenset(
    a.code for a in ATTRIBUTES if {key for key, _ in a.values} == {"true", "false"}
)


def service_code_of(category: Category) -> str:
    return category.value


def category_of(service_code: str) -> Category | None:
    try:
        return Category(service_code)
    except ValueError:
        return None


def service_entry(category: Category, rules: TenantRules) -> dict[str, Any]:
    return {
        "service_code": service_code_of(category),
        "service_name": f"{category.label_zh} {CATEGORY_LABELS_EN[category]}",
        "description": f"{CATEGORY_LABELS_EN[category]} complaints ({category.label_zh}投诉)",
        "metadata": bool(ATTRIBUTES),
        "type": "realtime",
        "keywords": ",".join(rules.category_keywords.get(category, ())),
        "group": SERVICE_GROUP,
    }


def service_list(rules: TenantRules) -> list[dict[str, Any]]:
    return [service_entry(c, rules) for c in Category]


def service_definition(category: Category) -> dict[str, Any]:
    return {
        "service_code": service_code_of(category),
        "attributes": [a.definition(i) for i, a in enumerate(ATTRIBUTES, start=1)],
    }
