"""The words of the complaint domain (DOMAIN.md "Channels", "Classification").

Enum values are the stable machine codes stored in the database and sent in events; the
Chinese labels are what the front desk sees. `WRITTEN_CHANNELS` and `FORWARDED_CHANNELS`
feed the grading rules (written and forwarded complaints are at least complex).
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """Where a complaint came from (投诉来源)."""

    PHONE = "phone"
    SMS = "sms"
    WECHAT = "wechat"
    LETTER = "letter"
    EMAIL = "email"
    APP = "app"
    WEBSITE = "website"
    WALK_IN = "walk_in"
    VERBAL = "verbal"
    GOVERNMENT = "government"
    GROUP = "group"
    CALL_CENTER = "call_center"
    QUALITY_DEPT = "quality_dept"
    MEDIA = "media"

    @property
    def label_zh(self) -> str:
        return CHANNEL_LABELS_ZH[self]

    @property
    def is_written(self) -> bool:
        return self in WRITTEN_CHANNELS

    @property
    def is_forwarded(self) -> bool:
        return self in FORWARDED_CHANNELS


CHANNEL_LABELS_ZH: dict[Channel, str] = {
    Channel.PHONE: "电话",
    Channel.SMS: "短信",
    Channel.WECHAT: "微信",
    Channel.LETTER: "书面邮寄",
    Channel.EMAIL: "电子邮件",
    Channel.APP: "推送通知/App",
    Channel.WEBSITE: "网站",
    Channel.WALK_IN: "来访",
    Channel.VERBAL: "口头反映",
    Channel.GOVERNMENT: "政府管理部门",
    Channel.GROUP: "集团",
    Channel.CALL_CENTER: "呼叫中心",
    Channel.QUALITY_DEPT: "品质部",
    Channel.MEDIA: "媒体",
}

# Written complaints are graded complex (DOMAIN.md, grade "Complex").
WRITTEN_CHANNELS: frozenset[Channel] = frozenset({Channel.LETTER, Channel.EMAIL})

# Forwarded by another body. Media is forwarded too, but a media complaint is major
# (exposure), which grading checks first.
FORWARDED_CHANNELS: frozenset[Channel] = frozenset(
    {
        Channel.GOVERNMENT,
        Channel.GROUP,
        Channel.CALL_CENTER,
        Channel.QUALITY_DEPT,
        Channel.MEDIA,
    }
)

# Bodies whose own callback result "dissatisfied" is itself a major complaint.
CALLBACK_FORWARDERS: frozenset[Channel] = frozenset(
    {Channel.CALL_CENTER, Channel.GROUP, Channel.QUALITY_DEPT}
)


class Category(StrEnum):
    """What the complaint is about (投诉分类, by content). Declaration order is the
    default tie-break order of keyword classification."""

    FACILITY_REPAIR = "facility_repair"
    ENVIRONMENT = "environment"
    SECURITY = "security"
    PARKING = "parking"
    NOISE = "noise"
    FEES = "fees"
    STAFF_ATTITUDE = "staff_attitude"
    LANDSCAPING = "landscaping"
    DECORATION = "decoration"
    OTHER = "other"

    @property
    def label_zh(self) -> str:
        return CATEGORY_LABELS_ZH[self]


CATEGORY_LABELS_ZH: dict[Category, str] = {
    Category.FACILITY_REPAIR: "设施维修",
    Category.ENVIRONMENT: "环境卫生",
    Category.SECURITY: "安全管理",
    Category.PARKING: "停车",
    Category.NOISE: "噪音",
    Category.FEES: "收费",
    Category.STAFF_ATTITUDE: "服务态度",
    Category.LANDSCAPING: "绿化",
    Category.DECORATION: "装修管理",
    Category.OTHER: "其他",
}

CATEGORY_LABELS_EN: dict[Category, str] = {
    Category.FACILITY_REPAIR: "Facility repair",
    Category.ENVIRONMENT: "Environment and hygiene",
    Category.SECURITY: "Security",
    Category.PARKING: "Parking",
    Category.NOISE: "Noise",
    Category.FEES: "Fees and billing",
    Category.STAFF_ATTITUDE: "Staff attitude",
    Category.LANDSCAPING: "Landscaping",
    Category.DECORATION: "Decoration management",
    Category.OTHER: "Other",
}


class Grade(StrEnum):
    """Severity (Poly Wuhan scheme). Ordered: simple < complex < major."""

    SIMPLE = "simple"
    COMPLEX = "complex"
    MAJOR = "major"

    @property
    def label_zh(self) -> str:
        return GRADE_LABELS_ZH[self]

    @property
    def rank(self) -> int:
        return _GRADE_RANK[self]


GRADE_LABELS_ZH: dict[Grade, str] = {
    Grade.SIMPLE: "简易",
    Grade.COMPLEX: "复杂",
    Grade.MAJOR: "重大",
}
_GRADE_RANK: dict[Grade, int] = {Grade.SIMPLE: 0, Grade.COMPLEX: 1, Grade.MAJOR: 2}


class Validity(StrEnum):
    """Whether the service fell short of the contract. Every complaint starts `pending`;
    `invalid` is an abnormal closure that needs a supervisor's approval with a reason."""

    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"

    @property
    def label_zh(self) -> str:
        return VALIDITY_LABELS_ZH[self]


VALIDITY_LABELS_ZH: dict[Validity, str] = {
    Validity.PENDING: "待认定",
    Validity.VALID: "有效投诉",
    Validity.INVALID: "无效投诉",
}
