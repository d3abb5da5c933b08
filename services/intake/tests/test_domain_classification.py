from __future__ import annotations

import pytest

from intake.domain.classification import GIVEN_BY_CALLER, classify_category
from intake.domain.keywords import find_keywords
from intake.domain.rules import DEFAULT_RULES, TenantRules
from intake.domain.vocabulary import Category

C = Category


@pytest.mark.parametrize(
    ("content", "demand", "expected"),
    [
        ("3栋厨房漏水，水管破了", None, C.FACILITY_REPAIR),
        ("电梯又坏了，困了十分钟", "尽快维修", C.FACILITY_REPAIR),
        ("The elevator in block 5 is broken", None, C.FACILITY_REPAIR),
        ("Water is leaking from the ceiling", None, C.FACILITY_REPAIR),
        ("楼道垃圾没人清理，有异味", None, C.ENVIRONMENT),
        ("The corridor is dirty and full of garbage", None, C.ENVIRONMENT),
        ("楼上装修声音太吵了", None, C.NOISE),
        ("Loud noise from the karaoke every night", None, C.NOISE),
        ("地下车库车位被人占了", None, C.PARKING),
        ("Someone took my parking space", None, C.PARKING),
        ("物业费账单多收了两个月", None, C.FEES),
        ("I was overcharged on this month's bill", None, C.FEES),
        ("保安骂人，态度很差", None, C.STAFF_ATTITUDE),
        ("The guard was rude to my mother", None, C.STAFF_ATTITUDE),
        ("小区绿化没人管，草坪都枯死了", None, C.LANDSCAPING),
        ("邻居违建阳台", None, C.DECORATION),
        ("家里被盗，门禁形同虚设", None, C.SECURITY),
        ("My bike was stolen, is there any CCTV?", None, C.SECURITY),
        ("ＥＬＥＶＡＴＯＲ broken", None, C.FACILITY_REPAIR),  # full-width letters
        ("", "要求处理垃圾", C.ENVIRONMENT),  # the demand counts too
    ],
)
def test_keyword_classification(content: str, demand: str | None, expected: Category) -> None:
    decision = classify_category(content, demand, DEFAULT_RULES)
    assert decision.category is expected, decision
    assert decision.matched
    assert all(k in decision.reason for k in decision.matched)


@pytest.mark.parametrize("content", ["今天天气不错", "Hello, I have a question", "", "   "])
def test_nothing_matches_gives_other_with_reason(content: str) -> None:
    decision = classify_category(content, None, DEFAULT_RULES)
    assert decision.category is C.OTHER
    assert decision.reason == "no category keyword matched"
    assert decision.matched == ()


def test_english_keywords_match_whole_words_only() -> None:
    # "fee" must not match "feedback", "lift" not "uplifting", "rat" not "separate".
    assert classify_category("My feedback is uplifting", None, DEFAULT_RULES).category is C.OTHER
    assert find_keywords("separate bins", ["rat"]) == ()
    assert find_keywords("the pipes are leaking", ["leak", "pipe"]) == ("leak", "pipe")


def test_caller_category_wins_over_keywords() -> None:
    decision = classify_category("电梯坏了", None, DEFAULT_RULES, given="noise")
    assert decision.category is C.NOISE
    assert decision.reason == GIVEN_BY_CALLER
    assert classify_category("x", None, DEFAULT_RULES, given=C.FEES).category is C.FEES


def test_empty_given_category_falls_back_to_keywords() -> None:
    assert classify_category("电梯坏了", None, DEFAULT_RULES, given="").category is (
        C.FACILITY_REPAIR
    )


def test_unknown_given_category_raises() -> None:
    with pytest.raises(ValueError):
        classify_category("x", None, DEFAULT_RULES, given="plumbing")


def test_more_hits_win() -> None:
    # decoration: 装修 (1); noise: 装修声, 吵, 噪音 (3)
    decision = classify_category("装修声太吵，噪音扰人", None, DEFAULT_RULES)
    assert decision.category is C.NOISE
    assert set(decision.matched) >= {"装修声", "吵", "噪音"}


def test_tie_goes_to_rule_order() -> None:
    # one hit each: 电梯 (facility_repair) and 垃圾 (environment) → declared first wins
    decision = classify_category("电梯里有垃圾", None, DEFAULT_RULES)
    assert decision.category is C.FACILITY_REPAIR
    rules = TenantRules.from_overrides({"category_keywords": {"facility_repair": ["电梯x"]}})
    assert classify_category("电梯里有垃圾", None, rules).category is C.ENVIRONMENT


def test_tenant_keywords_extend_taxonomy() -> None:
    rules = TenantRules.from_overrides({"category_keywords": {"parking": ["充电桩"]}})
    assert classify_category("充电桩不能用", None, rules).category is C.PARKING
    assert classify_category("充电桩不能用", None, DEFAULT_RULES).category is C.OTHER


def test_classification_is_deterministic() -> None:
    text = "电梯漏水，垃圾，吵，停车，物业费"
    first = classify_category(text, None, DEFAULT_RULES)
    assert all(classify_category(text, None, DEFAULT_RULES) == first for _ in range(20))


def test_the_event_vocabulary_is_intakes() -> None:
    """Dispatch refuses routing rules for categories and grades outside the contracts'
    vocabulary; it must be exactly what intake classifies into."""
    from intake.domain.vocabulary import Grade
    from propdesk.events.contracts.vocabulary import CATEGORIES, GRADES

    assert tuple(c.value for c in Category) == CATEGORIES
    assert tuple(g.value for g in Grade) == GRADES
