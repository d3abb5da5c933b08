"""Request and response bodies of the native intake API (kept apart from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from intake.domain.vocabulary import CALLBACK_FORWARDERS, Category, Channel, Grade
from propdesk.service.input_types import JSON_INT, JSON_NUMBER, Instant, JsonBool
from propdesk.service.text import NoNul

MAX_CONTENT = 4000
MAX_ATTACHMENTS = 20

# Every text field refuses NUL (`no_nul`): PostgreSQL cannot store it.
Short = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NoNul]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), NoNul
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ComplainantIn(_In):
    name: Short | None = None
    phone: (
        Annotated[str, StringConstraints(max_length=40, pattern=r"^[0-9+\-() ]{3,40}$")] | None
    ) = None
    # Deliberately loose (one @, a dot in the domain): the address is for people to use,
    # and a stricter check would refuse real addresses.
    email: (
        Annotated[
            str,
            StringConstraints(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"),
            NoNul,
        ]
        | None
    ) = None
    # The household: a unit id of this project, when the caller knows it.
    household_id: UUID | None = None


class UnitIn(_In):
    id: UUID | None = None
    building: Short | None = None
    room: Short | None = None

    @model_validator(mode="after")
    def _id_or_building_room(self) -> UnitIn:
        if self.id is None and not (self.building and self.room):
            raise ValueError("give either `id` or both `building` and `room`")
        return self


class AttachmentIn(_In):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul] | None = None
    ref: Annotated[str, StringConstraints(min_length=1, max_length=500), NoNul] | None = None
    kind: Literal["photo", "letter", "audio", "video", "document", "other"] = "other"
    name: Short | None = None

    @model_validator(mode="after")
    def _url_or_ref(self) -> AttachmentIn:
        if not self.url and not self.ref:
            raise ValueError("an attachment needs a `url` or a `ref`")
        return self


class ComplaintIn(_In):
    project: Short = Field(description="Project code or id")
    channel: Channel
    content: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CONTENT), NoNul
    ]
    # ISO 8601 with a UTC offset; a number is refused (`iso8601`), not read as a Unix time.
    received_at: Instant | None = Field(
        default=None, description="When the complaint was received; defaults to now"
    )
    occurred_at: Instant | None = None
    complainant: ComplainantIn | None = None
    unit: UnitIn | None = None
    place: Short | None = None
    # WGS84 degrees; give both or neither.
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), JSON_NUMBER] | None = None
    long: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False), JSON_NUMBER] | None = Field(
        default=None, validate_default=True
    )
    demand: Text | None = None
    receiver: Short | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    external_reference: Short | None = None
    device_id: Short | None = Field(default=None, description="The caller's device (Open311)")
    category: Category | None = None
    # 二次投诉: the caller says the complainant was unhappy with the handling of an earlier
    # complaint on this matter; `previous_case` names it (reference or id) when known.
    second_complaint: JsonBool = False
    previous_case: Short | None = None
    # A callback result forwarded by the call center, group or quality department; their
    # "dissatisfied" is itself a major complaint (DOMAIN.md, grade "Major").
    forwarded_result: Literal["dissatisfied"] | None = None

    @field_validator("long")
    @classmethod
    def _with_lat(cls, value: float | None, info: ValidationInfo) -> float | None:
        if (value is None) != (info.data.get("lat") is None) and "lat" in info.data:
            raise ValueError("give lat and long together")
        return value

    @field_validator("forwarded_result")
    @classmethod
    def _from_a_forwarder(cls, value: str | None, info: ValidationInfo) -> str | None:
        channel = info.data.get("channel")
        if value is not None and channel is not None and channel not in CALLBACK_FORWARDERS:
            allowed = ", ".join(sorted(c.value for c in CALLBACK_FORWARDERS))
            raise ValueError(f"only with a forwarding channel ({allowed})")
        return value


class ClassificationOverrideIn(_In):
    category: Category | None = None
    grade: Grade | None = None
    reason: Reason

    @model_validator(mode="after")
    def _something(self) -> ClassificationOverrideIn:
        if self.category is None and self.grade is None:
            raise ValueError("give a `category`, a `grade`, or both")
        return self


class InvalidationIn(_In):
    reason: Reason


class DecisionIn(_In):
    comment: Text | None = None


class FlagIn(_In):
    flag: Literal["malicious", "defamatory"]
    reason: Reason


class ApiKeyIn(_In):
    name: Short
    projects: list[Short] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Project codes or ids; omit for every project (an empty list would be a "
        "key for none)",
    )
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=1_000_000), JSON_INT] = 6000


class ComplaintOut(BaseModel):
    id: UUID
    reference: str
    project_id: UUID
    project: str | None = None
    channel: str
    status: str
    validity: str
    category: str | None
    category_source: str | None
    category_reason: str | None
    grade: str | None
    grade_reasons: list[str]
    complainant: dict[str, object | None]
    unit: dict[str, object | None]
    received_at: datetime
    recorded_at: datetime
    occurred_at: datetime | None
    place: str | None
    content: str
    demand: str | None
    receiver: str | None
    attachments: list[dict[str, object | None]]
    external_reference: str | None
    calls: int
    last_call_at: datetime | None
    group_case_id: UUID | None
    flags: list[str]
    version: int
