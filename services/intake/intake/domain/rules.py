"""Per-tenant intake rules (DOMAIN.md: "where the documents disagree, the platform makes the
rule a per-tenant setting with the default shown here").

`TenantRules()` holds the defaults; `TenantRules.from_overrides(json_obj)` applies a
tenant's stored overrides and validates them, raising `RulesError` whose `violations` name
each bad field (`rules.<field>[.<key>]`), the rule broken and a message, ready to be sent
as problem+json `errors`.

Merging: scalar settings replace the default; `category_keywords`, `major_keywords` and
`complex_keywords` are maps whose listed keys replace that key's default list and whose
other keys keep the default. An empty list switches a keyword rule off for that tenant.

Defaults:
- group complaint: 3 or more distinct households on the same matter within 72 hours
  (DOMAIN.md grade "Major": 群体性投诉, three or more households);
- duplicate: same household on the same matter while its case is open, within 72 hours;
- same matter by content: character-bigram / word Jaccard similarity >= 0.3;
- received_at: at most 168 hours (7 days) in the past, at most 5 minutes in the future
  (clock skew of the caller's system);
- second complaint: a handled case of the same household on the same matter within 180
  days; the third complaint on a matter (two handled before) is major.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from intake.domain.vocabulary import Category

MAX_KEYWORD_LENGTH = 50
MAX_KEYWORDS_PER_RULE = 200


class MajorTrigger(StrEnum):
    """Content triggers of a major grade. Codes appear in grade reasons as `major:<code>`."""

    LAWYER_LETTER = "lawyer_letter"
    COMPENSATION = "compensation"
    INJURY = "injury"
    ECONOMIC_LOSS = "economic_loss"
    MEDIA = "media"


class ComplexTrigger(StrEnum):
    """Content triggers of a complex grade. Codes appear as `complex:<code>`."""

    STAFF_CONDUCT = "staff_conduct"
    DEPARTMENT = "department"
    SECOND_COMPLAINT = "second_complaint"


# fmt: off
DEFAULT_CATEGORY_KEYWORDS: dict[Category, tuple[str, ...]] = {
    Category.FACILITY_REPAIR: (
        "漏水", "渗水", "水管", "爆管", "停水", "停电", "电梯", "维修", "报修", "坏了", "损坏",
        "故障", "灯不亮", "路灯", "门坏", "堵塞", "下水道", "水压", "leak", "pipe", "elevator",
        "lift", "broken", "repair", "outage", "blocked", "clogged", "no water", "no power",
        "light out",
    ),
    Category.ENVIRONMENT: (
        "垃圾", "卫生", "异味", "臭", "脏", "保洁", "清洁", "蟑螂", "老鼠", "蚊虫", "污水",
        "garbage", "trash", "rubbish", "dirty", "smell", "stink", "cleaning", "hygiene", "rat",
        "cockroach", "pest",
    ),
    Category.SECURITY: (
        "盗", "小偷", "门禁", "陌生人", "监控", "安全隐患", "消防", "被撬", "security", "theft",
        "stolen", "thief", "burglary", "intruder", "cctv", "access card", "fire exit",
    ),
    Category.PARKING: (
        "停车", "车位", "车库", "占位", "乱停", "道闸", "停车费", "parking", "car park", "garage",
        "parked",
    ),
    Category.NOISE: (
        "噪音", "噪声", "吵", "装修声", "扰民", "半夜", "广场舞", "noise", "noisy", "loud",
    ),
    Category.FEES: (
        "物业费", "收费", "账单", "缴费", "乱收费", "多收", "发票", "退费", "公摊", "fee", "bill",
        "billing", "charge", "invoice", "refund", "overcharged",
    ),
    Category.STAFF_ATTITUDE: (
        "态度", "保安骂", "骂人", "服务差", "不理", "推诿", "刁难", "不耐烦", "辱骂", "rude",
        "attitude", "impolite", "unprofessional", "insulted", "ignored",
    ),
    Category.LANDSCAPING: (
        "绿化", "树", "草坪", "修剪", "花坛", "枯死", "浇水", "landscaping", "tree", "lawn",
        "grass", "hedge", "garden",
    ),
    Category.DECORATION: (
        "装修", "违建", "违章搭建", "拆墙", "占用公共", "封阳台", "建筑垃圾", "renovation",
        "decoration", "illegal construction", "unauthorized construction",
    ),
}

DEFAULT_MAJOR_KEYWORDS: dict[MajorTrigger, tuple[str, ...]] = {
    MajorTrigger.LAWYER_LETTER: (
        "律师函", "律师", "起诉", "诉讼", "法院", "lawyer's letter", "lawyer", "attorney",
        "solicitor", "lawsuit", "sue", "court", "legal action",
    ),
    MajorTrigger.COMPENSATION: (
        "索赔", "赔偿", "赔钱", "compensation", "compensate", "damages", "reimburse",
    ),
    MajorTrigger.INJURY: (
        "受伤", "摔伤", "砸伤", "烫伤", "骨折", "流血", "住院", "送医", "伤人", "injury", "injured",
        "hurt", "hospital", "bleeding", "fracture",
    ),
    MajorTrigger.ECONOMIC_LOSS: (
        "重大损失", "巨大损失", "巨额损失", "财产损失", "泡坏", "泡水", "heavy loss", "major loss",
        "property damage", "flooded",
    ),
    MajorTrigger.MEDIA: (
        "媒体", "记者", "曝光", "电视台", "报社", "上热搜", "微博", "media", "journalist",
        "newspaper", "reporter", "press", "tv station", "expose",
    ),
}

DEFAULT_COMPLEX_KEYWORDS: dict[ComplexTrigger, tuple[str, ...]] = {
    ComplexTrigger.STAFF_CONDUCT: (
        "态度", "骂", "辱骂", "服务差", "刁难", "推诿", "收红包", "索要", "吃拿卡要", "打人",
        "rude", "attitude", "insulted", "bribe", "unprofessional", "misconduct",
    ),
    ComplexTrigger.DEPARTMENT: (
        "整个部门", "全体员工", "管理处", "工程部", "保安部", "保洁部", "客服部", "物业公司",
        "whole department", "management office", "the department", "property company",
    ),
    ComplexTrigger.SECOND_COMPLAINT: (
        "二次投诉", "再次投诉", "又投诉", "上次投诉", "多次投诉", "还没解决", "仍未解决",
        "一直没解决", "second complaint", "complained before", "complained again",
        "still not fixed", "still not resolved",
    ),
}
# fmt: on


def _clean_keywords(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of strings")
    out: list[str] = []
    for i, kw in enumerate(value):
        if not isinstance(kw, str):
            raise ValueError(f"item {i} must be a string")
        kw = kw.strip()
        if not kw:
            raise ValueError(f"item {i} is empty")
        if "\x00" in kw:
            raise ValueError(f"item {i} must not contain the NUL character (\\u0000)")
        if len(kw) > MAX_KEYWORD_LENGTH:
            raise ValueError(f"item {i} is longer than {MAX_KEYWORD_LENGTH} characters")
        if kw not in out:
            out.append(kw)
    if len(out) > MAX_KEYWORDS_PER_RULE:
        raise ValueError(f"at most {MAX_KEYWORDS_PER_RULE} keywords per rule")
    return tuple(out)


Keywords = Annotated[tuple[str, ...], BeforeValidator(_clean_keywords)]


class TenantRules(BaseModel):
    """One tenant's (or project's) intake rules. Immutable; build with `from_overrides`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category_keywords: dict[Category, Keywords] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_KEYWORDS)
    )
    major_keywords: dict[MajorTrigger, Keywords] = Field(
        default_factory=lambda: dict(DEFAULT_MAJOR_KEYWORDS)
    )
    complex_keywords: dict[ComplexTrigger, Keywords] = Field(
        default_factory=lambda: dict(DEFAULT_COMPLEX_KEYWORDS)
    )
    group_threshold_households: int = Field(default=3, ge=2, le=1000)
    group_window_hours: int = Field(default=72, ge=1, le=24 * 90)
    duplicate_window_hours: int = Field(default=72, ge=1, le=24 * 90)
    content_similarity_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    received_at_max_age_hours: int = Field(default=168, ge=1, le=24 * 366)
    received_at_max_future_minutes: int = Field(default=5, ge=0, le=24 * 60)
    # 二次投诉: how far back a handled case of the same household counts as the earlier
    # complaint on the matter, and which complaint on one matter is major (the third:
    # "repeated dissatisfaction → major").
    repeat_window_days: int = Field(default=180, ge=1, le=3 * 366)
    repeat_major_round: int = Field(default=3, ge=2, le=100)

    @field_validator("category_keywords")
    @classmethod
    def _no_keywords_for_other(
        cls, value: dict[Category, tuple[str, ...]]
    ) -> dict[Category, tuple[str, ...]]:
        if value.get(Category.OTHER):
            raise ValueError("'other' is the fallback category and takes no keywords")
        # Tie-break order is the category declaration order, whatever order JSON gave.
        return {c: value[c] for c in Category if c in value}

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None) -> Self:
        """Defaults with a tenant's overrides applied. Raises `RulesError` on bad input."""
        if overrides is None:
            return cls()
        if not isinstance(overrides, Mapping):
            raise RulesError([RuleViolation("rules", "type", "rules must be a JSON object")])
        defaults = cls()
        merged: dict[str, Any] = dict(overrides)
        for name in ("category_keywords", "major_keywords", "complex_keywords"):
            if name in overrides and isinstance(overrides[name], Mapping):
                base = {str(k): list(v) for k, v in getattr(defaults, name).items()}
                base.update(overrides[name])
                merged[name] = base
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise RulesError.from_validation(exc) from None

    @classmethod
    def from_written_overrides(cls, overrides: Mapping[str, Any] | None) -> Self:
        """`from_overrides` for rules being written (`PUT /v1/rules`, onboarding): a number
        must also be a number as written, not text or a boolean (`"72"`, `true`), which
        pydantic's lax mode would read. Rules stored before this check load as they were.
        Every violation is reported at once."""
        as_text = _numbers_written_as_text(overrides) if isinstance(overrides, Mapping) else []
        try:
            rules = cls.from_overrides(overrides)
        except RulesError as exc:
            named = {v.field for v in as_text}
            raise RulesError(
                [*as_text, *(v for v in exc.violations if v.field not in named)]
            ) from None
        if as_text:
            raise RulesError(as_text)
        return rules

    def to_overrides(self) -> dict[str, Any]:
        """The JSON form of these rules (every field, so it round-trips through
        `from_overrides`)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class RuleViolation:
    field: str
    rule: str
    message: str

    def as_field_error(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class RulesError(ValueError):
    """Tenant rule overrides that do not validate; `violations` name each bad field."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))

    @classmethod
    def from_validation(cls, exc: ValidationError) -> RulesError:
        out: list[RuleViolation] = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "[key]")
            message = err.get("msg", "")
            message = message.removeprefix("Value error, ")
            out.append(RuleViolation(f"rules.{loc}" if loc else "rules", err["type"], message))
        return cls(out)

    def as_field_errors(self) -> list[dict[str, str]]:
        return [v.as_field_error() for v in self.violations]


# The rules' numeric settings and their kind (int or float).
_NUMBER_FIELDS: dict[str, type] = {
    name: field.annotation
    for name, field in TenantRules.model_fields.items()
    if field.annotation in (int, float)
}


def _numbers_written_as_text(overrides: Mapping[str, Any]) -> list[RuleViolation]:
    """The numeric settings given as text or a boolean (null is pydantic's to refuse)."""
    out = []
    for name, kind in _NUMBER_FIELDS.items():
        value = overrides.get(name)
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            continue
        what = "number" if kind is float else "integer"
        out.append(
            RuleViolation(
                f"rules.{name}",
                "float_type" if kind is float else "int_type",
                # YAML reads 1e-1 (no dot) as text: the example says how to write it.
                f"must be a JSON {what} such as {'0.5' if kind is float else '72'}, not text or"
                " a boolean",
            )
        )
    return out


DEFAULT_RULES = TenantRules()
