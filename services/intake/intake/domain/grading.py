"""Grade by the Poly (Wuhan) scheme (DOMAIN.md "Classification", 2. Grade).

Major 重大 when any of:
  group complaint (distinct households on the same matter >= `group_threshold_households`),
  lawyer's letter / legal action, explicit compensation claim, personal injury, large
  economic loss, media exposure (keywords, or the media channel), a "dissatisfied"
  callback result forwarded by the call center, group or quality department, or repeated
  dissatisfaction (the `repeat_major_round`-th complaint on one matter, default the third).
Complex 复杂 when any of:
  staff conduct (category staff_attitude, or conduct keywords), against a whole
  department's service, a second complaint (fact from the caller, or keywords such as
  再次投诉), a written channel (letter, email), a forwarded channel (government, group,
  call center, quality department).
Simple 简易 otherwise.

Every reason is `<grade>:<code> — <human text>`, e.g. `major:lawyer_letter — content
mentions 律师函`. All reasons found are returned (major ones first), so a reviewer sees why
a case is major and also what would keep it complex if the major trigger proves false.
Keyword triggers skip plainly negated mentions ("没有受伤"); see keywords.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from intake.domain.keywords import find_keywords, joined_text
from intake.domain.rules import ComplexTrigger, MajorTrigger, TenantRules
from intake.domain.vocabulary import (
    CALLBACK_FORWARDERS,
    FORWARDED_CHANNELS,
    WRITTEN_CHANNELS,
    Category,
    Channel,
    Grade,
)

REASON_SEPARATOR = " — "


@dataclass(frozen=True, slots=True)
class GradingFacts:
    channel: Channel
    content: str
    demand: str | None = None
    category: Category = Category.OTHER
    # The complainant complained about the same matter before and was unhappy with the
    # handling, or a prior closed case on the same matter exists (二次投诉).
    is_second_complaint: bool = False
    # Handled cases on the same matter before this one (1 = this is the second complaint,
    # 2 = the third); `previous_reference` is the latest of them, when known.
    prior_cases: int = 0
    previous_reference: str | None = None
    # A "dissatisfied" callback result forwarded by the call center, group or quality
    # department (the forwarding body is the channel).
    forwarded_dissatisfied: bool = False
    # Distinct households on the same matter within the group window, this one included.
    group_size: int = 1


@dataclass(frozen=True, slots=True)
class GradeDecision:
    grade: Grade
    reasons: tuple[str, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """The machine part of each reason, e.g. ('major:injury', 'complex:written')."""
        return tuple(r.split(REASON_SEPARATOR, 1)[0] for r in self.reasons)


def _reason(grade: Grade, code: str, text: str) -> str:
    return f"{grade.value}:{code}{REASON_SEPARATOR}{text}"


STAFF_OVERRIDE = "staff_override"


def staff_override_reason(grade: str, reason: str) -> str:
    """The grade reason of a staff override: `<grade>:staff_override — <their reason>`."""
    return f"{grade}:{STAFF_OVERRIDE}{REASON_SEPARATOR}{reason}"


SIMPLE_DEFAULT = f"{Grade.SIMPLE.value}:default"


def raised_by_group(reasons: Sequence[str], group_reason: str) -> list[str]:
    """The reasons of a complaint its group raises to major: the group's first, then those
    of the earlier ones that still hold (complex triggers, a staff override's history).
    "No major or complex trigger" no longer does, and goes."""
    kept = [r for r in reasons if r.partition(REASON_SEPARATOR)[0] != SIMPLE_DEFAULT]
    return [_reason(Grade.MAJOR, "group", group_reason), *kept]


def standing_override(grade: str, reasons: Sequence[str]) -> str | None:
    """The reason of the staff override that set `grade`, if a person decided the current
    grade; else None. A person's decision is not undone by a later automatic one (a group
    that grows): only another override changes it."""
    code = f"{grade}:{STAFF_OVERRIDE}"
    for reason in reasons:
        head, _, text = reason.partition(REASON_SEPARATOR)
        if head == code:
            return text
    return None


_MAJOR_TEXT = {
    MajorTrigger.LAWYER_LETTER: "lawyer's letter or legal action",
    MajorTrigger.COMPENSATION: "compensation claim",
    MajorTrigger.INJURY: "personal injury",
    MajorTrigger.ECONOMIC_LOSS: "large economic loss",
    MajorTrigger.MEDIA: "media exposure",
}
_COMPLEX_TEXT = {
    ComplexTrigger.STAFF_CONDUCT: "staff attitude or conduct",
    ComplexTrigger.DEPARTMENT: "against a department's service",
    ComplexTrigger.SECOND_COMPLAINT: "second complaint",
}


def grade_complaint(facts: GradingFacts, rules: TenantRules) -> GradeDecision:
    # Callers holding database strings may pass codes rather than enum members.
    channel, category = Channel(facts.channel), Category(facts.category)
    text = joined_text(facts.content, facts.demand)
    major: list[str] = []
    complex_: list[str] = []

    if facts.group_size >= rules.group_threshold_households:
        major.append(
            _reason(
                Grade.MAJOR,
                "group",
                f"{facts.group_size} households on the same matter within "
                f"{rules.group_window_hours} h (threshold {rules.group_threshold_households})",
            )
        )
    for trigger, keywords in rules.major_keywords.items():
        hits = find_keywords(text, keywords, honour_negation=True)
        if hits:
            major.append(
                _reason(
                    Grade.MAJOR,
                    trigger.value,
                    f"{_MAJOR_TEXT[trigger]}: content mentions {', '.join(hits)}",
                )
            )
    if channel is Channel.MEDIA and not any(r.startswith("major:media") for r in major):
        major.append(_reason(Grade.MAJOR, "media", "media exposure: received from the media"))
    prior = max(facts.prior_cases, 1 if facts.is_second_complaint else 0)
    after = f" after {facts.previous_reference}" if facts.previous_reference else ""
    if prior + 1 >= rules.repeat_major_round:
        major.append(
            _reason(
                Grade.MAJOR,
                "repeated_dissatisfaction",
                f"repeated dissatisfaction: complaint no. {prior + 1} on the same matter{after}",
            )
        )
    if facts.forwarded_dissatisfied:
        source = (
            f"forwarded by {channel.value}"
            if channel in CALLBACK_FORWARDERS
            else "forwarded by a callback body"
        )
        major.append(
            _reason(Grade.MAJOR, "forwarded_dissatisfied", f"dissatisfied callback result {source}")
        )

    if category is Category.STAFF_ATTITUDE:
        complex_.append(
            _reason(Grade.COMPLEX, "staff_conduct", "staff attitude or conduct: category")
        )
    for trigger, keywords in rules.complex_keywords.items():
        if trigger is ComplexTrigger.STAFF_CONDUCT and category is Category.STAFF_ATTITUDE:
            continue
        if trigger is ComplexTrigger.SECOND_COMPLAINT and prior:
            continue
        hits = find_keywords(text, keywords)
        if hits:
            complex_.append(
                _reason(
                    Grade.COMPLEX,
                    trigger.value,
                    f"{_COMPLEX_TEXT[trigger]}: content mentions {', '.join(hits)}",
                )
            )
    if prior:
        complex_.append(
            _reason(
                Grade.COMPLEX,
                "second_complaint",
                f"second complaint: unhappy with the handling of the same matter{after}",
            )
        )
    if channel in WRITTEN_CHANNELS:
        complex_.append(_reason(Grade.COMPLEX, "written", f"written complaint ({channel.value})"))
    if channel in FORWARDED_CHANNELS and channel is not Channel.MEDIA:
        complex_.append(_reason(Grade.COMPLEX, "forwarded", f"forwarded by {channel.value}"))

    if major:
        return GradeDecision(Grade.MAJOR, tuple(major + complex_))
    if complex_:
        return GradeDecision(Grade.COMPLEX, tuple(complex_))
    return GradeDecision(
        Grade.SIMPLE, (_reason(Grade.SIMPLE, "default", "no major or complex trigger"),)
    )
