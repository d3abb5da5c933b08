from __future__ import annotations

import pytest

from intake.domain.grading import GradingFacts, grade_complaint, raised_by_group
from intake.domain.rules import DEFAULT_RULES, TenantRules
from intake.domain.vocabulary import Category, Channel, Grade

P = Channel.PHONE


def grade(content: str, channel: Channel = P, **kw: object) -> tuple[Grade, tuple[str, ...]]:
    decision = grade_complaint(GradingFacts(channel=channel, content=content, **kw), DEFAULT_RULES)  # type: ignore[arg-type]
    return decision.grade, decision.codes


@pytest.mark.parametrize(
    ("content", "channel", "extra", "expected_grade", "expected_code"),
    [
        # major
        ("已经委托律师发律师函", P, {}, Grade.MAJOR, "major:lawyer_letter"),
        ("We will send a lawyer's letter", P, {}, Grade.MAJOR, "major:lawyer_letter"),
        ("We will send a lawyer’s letter", P, {}, Grade.MAJOR, "major:lawyer_letter"),
        ("漏水泡坏了地板，要求赔偿", P, {}, Grade.MAJOR, "major:compensation"),
        ("I demand compensation for the damage", P, {}, Grade.MAJOR, "major:compensation"),
        ("孩子在小区摔伤了", P, {}, Grade.MAJOR, "major:injury"),
        ("My father was injured by a falling tile", P, {}, Grade.MAJOR, "major:injury"),
        ("再不处理就找记者曝光", P, {}, Grade.MAJOR, "major:media"),
        ("I will call the newspaper", P, {}, Grade.MAJOR, "major:media"),
        ("路灯坏了", Channel.MEDIA, {}, Grade.MAJOR, "major:media"),
        ("电梯坏了", P, {"group_size": 3}, Grade.MAJOR, "major:group"),
        (
            "回访不满意",
            Channel.CALL_CENTER,
            {"forwarded_dissatisfied": True},
            Grade.MAJOR,
            "major:forwarded_dissatisfied",
        ),
        (
            "回访不满意",
            Channel.QUALITY_DEPT,
            {"forwarded_dissatisfied": True},
            Grade.MAJOR,
            "major:forwarded_dissatisfied",
        ),
        # complex
        ("保安态度恶劣", P, {}, Grade.COMPLEX, "complex:staff_conduct"),
        ("x", P, {"category": Category.STAFF_ATTITUDE}, Grade.COMPLEX, "complex:staff_conduct"),
        ("The cleaner was rude", P, {}, Grade.COMPLEX, "complex:staff_conduct"),
        ("工程部整体服务水平太低", P, {}, Grade.COMPLEX, "complex:department"),
        ("路灯坏了", P, {"is_second_complaint": True}, Grade.COMPLEX, "complex:second_complaint"),
        ("这是我再次投诉路灯问题", P, {}, Grade.COMPLEX, "complex:second_complaint"),
        ("路灯坏了", Channel.LETTER, {}, Grade.COMPLEX, "complex:written"),
        ("路灯坏了", Channel.EMAIL, {}, Grade.COMPLEX, "complex:written"),
        ("路灯坏了", Channel.GOVERNMENT, {}, Grade.COMPLEX, "complex:forwarded"),
        ("路灯坏了", Channel.GROUP, {}, Grade.COMPLEX, "complex:forwarded"),
        ("路灯坏了", Channel.CALL_CENTER, {}, Grade.COMPLEX, "complex:forwarded"),
        ("路灯坏了", Channel.QUALITY_DEPT, {}, Grade.COMPLEX, "complex:forwarded"),
        # simple
        ("路灯坏了", P, {}, Grade.SIMPLE, "simple:default"),
        ("The street light is out", Channel.WECHAT, {}, Grade.SIMPLE, "simple:default"),
        ("电梯坏了", P, {"group_size": 2}, Grade.SIMPLE, "simple:default"),
        ("没有人受伤，只是路灯坏了", P, {}, Grade.SIMPLE, "simple:default"),
        ("No one was injured, the light is out", P, {}, Grade.SIMPLE, "simple:default"),
        ("nobody got hurt", Channel.APP, {}, Grade.SIMPLE, "simple:default"),
    ],
)
def test_grade_table(
    content: str,
    channel: Channel,
    extra: dict[str, object],
    expected_grade: Grade,
    expected_code: str,
) -> None:
    got_grade, codes = grade(content, channel, **extra)
    assert got_grade is expected_grade, codes
    assert expected_code in codes


def test_two_households_is_not_major_three_is() -> None:
    assert grade("电梯坏了", group_size=2)[0] is Grade.SIMPLE
    assert grade("电梯坏了", group_size=3)[0] is Grade.MAJOR


def test_group_threshold_is_per_tenant() -> None:
    rules = TenantRules.from_overrides({"group_threshold_households": 5})
    facts = GradingFacts(channel=P, content="电梯坏了", group_size=4)
    assert grade_complaint(facts, rules).grade is Grade.SIMPLE
    facts = GradingFacts(channel=P, content="电梯坏了", group_size=5)
    assert grade_complaint(facts, rules).grade is Grade.MAJOR


def test_negation_only_skips_negated_mentions() -> None:
    # one negated mention, one real one → still major
    assert grade("上次没有受伤，这次孩子受伤了")[0] is Grade.MAJOR
    # "不小心" is not a negation of the injury
    assert grade("孩子不小心摔伤了")[0] is Grade.MAJOR


def test_major_keeps_complex_reasons_major_first() -> None:
    decision = grade_complaint(
        GradingFacts(channel=Channel.LETTER, content="保安态度差，我要索赔"), DEFAULT_RULES
    )
    assert decision.grade is Grade.MAJOR
    assert decision.codes[0] == "major:compensation"
    assert "complex:written" in decision.codes
    assert "complex:staff_conduct" in decision.codes
    assert all(" — " in r for r in decision.reasons)


def test_reason_names_the_keyword() -> None:
    decision = grade_complaint(GradingFacts(channel=P, content="我会发律师函"), DEFAULT_RULES)
    assert decision.reasons[0].startswith("major:lawyer_letter — ")
    assert "律师函" in decision.reasons[0]


def test_media_channel_with_media_keyword_gives_one_media_reason() -> None:
    _, codes = grade("记者来采访", Channel.MEDIA)
    assert codes.count("major:media") == 1
    assert "complex:forwarded" not in codes


def test_second_complaint_fact_and_keyword_give_one_reason() -> None:
    _, codes = grade("再次投诉", is_second_complaint=True)
    assert codes.count("complex:second_complaint") == 1


def test_tenant_can_switch_a_trigger_off() -> None:
    rules = TenantRules.from_overrides({"major_keywords": {"media": []}})
    decision = grade_complaint(GradingFacts(channel=P, content="找记者曝光"), rules)
    assert decision.grade is Grade.SIMPLE


def test_codes_are_accepted_for_channel_and_category() -> None:
    facts = GradingFacts(channel="media", content="x", category="staff_attitude")  # type: ignore[arg-type]
    assert grade_complaint(facts, DEFAULT_RULES).codes == (
        "major:media",
        "complex:staff_conduct",
    )


@pytest.mark.parametrize(
    ("extra", "expected_grade", "expected_codes"),
    [
        ({"prior_cases": 1}, Grade.COMPLEX, {"complex:second_complaint"}),
        ({"is_second_complaint": True}, Grade.COMPLEX, {"complex:second_complaint"}),
        (
            {"prior_cases": 2},
            Grade.MAJOR,
            {"major:repeated_dissatisfaction", "complex:second_complaint"},
        ),
        ({"prior_cases": 0}, Grade.SIMPLE, {"simple:default"}),
    ],
)
def test_second_and_repeated_complaints(
    extra: dict[str, object], expected_grade: Grade, expected_codes: set[str]
) -> None:
    got, codes = grade("路灯坏了", **extra)
    assert got is expected_grade
    assert set(codes) == expected_codes


def test_repeat_round_is_a_tenant_setting_and_reason_names_the_earlier_case() -> None:
    rules = TenantRules.from_overrides({"repeat_major_round": 2})
    decision = grade_complaint(
        GradingFacts(
            channel=P, content="路灯坏了", prior_cases=1, previous_reference="SUNRISE-20261120-0003"
        ),
        rules,
    )
    assert decision.grade is Grade.MAJOR
    assert "after SUNRISE-20261120-0003" in decision.reasons[0]


def test_a_group_raises_the_reasons_too() -> None:
    """A complaint its group raises to major keeps what still holds of its reasons, the
    group's first; "no major or complex trigger" is no longer true and goes. The group's
    reason reads the same as on a complaint graded major by its own group count."""
    simple = grade_complaint(GradingFacts(channel=P, content="电梯坏了"), TenantRules())
    assert [r.split(":")[0] for r in simple.reasons] == ["simple"]
    reason = "3 households on the same matter within 72 h (threshold 3)"
    assert raised_by_group(simple.reasons, reason) == [f"major:group — {reason}"]
    letter = grade_complaint(
        GradingFacts(channel=Channel.LETTER, content="电梯坏了"), TenantRules()
    )
    raised = raised_by_group(letter.reasons, reason)
    assert raised[0] == f"major:group — {reason}" and raised[1:] == list(letter.reasons)
    own = grade_complaint(GradingFacts(channel=P, content="电梯坏了", group_size=3), TenantRules())
    assert own.reasons[0] == f"major:group — {reason}"
