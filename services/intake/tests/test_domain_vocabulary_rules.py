from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from intake.domain.received_at import check_received_at
from intake.domain.rules import DEFAULT_RULES, RulesError, TenantRules
from intake.domain.vocabulary import (
    CHANNEL_LABELS_ZH,
    FORWARDED_CHANNELS,
    WRITTEN_CHANNELS,
    Category,
    Channel,
    Grade,
    Validity,
)


def test_every_enum_member_has_a_chinese_label() -> None:
    assert {c.label_zh for c in Channel} >= {"电话", "短信", "微信", "书面邮寄", "呼叫中心", "媒体"}
    assert len(CHANNEL_LABELS_ZH) == len(Channel) == 14
    assert Category.FACILITY_REPAIR.label_zh == "设施维修"
    assert Category.OTHER.label_zh == "其他"
    assert [g.label_zh for g in Grade] == ["简易", "复杂", "重大"]
    assert Validity.INVALID.label_zh == "无效投诉"


def test_written_and_forwarded_channels() -> None:
    assert {Channel.LETTER, Channel.EMAIL} == WRITTEN_CHANNELS
    assert {
        Channel.GOVERNMENT,
        Channel.GROUP,
        Channel.CALL_CENTER,
        Channel.QUALITY_DEPT,
        Channel.MEDIA,
    } == FORWARDED_CHANNELS
    assert Channel.EMAIL.is_written and not Channel.PHONE.is_written
    assert Channel.CALL_CENTER.is_forwarded and not Channel.WECHAT.is_forwarded


def test_grade_rank_orders_severity() -> None:
    assert Grade.SIMPLE.rank < Grade.COMPLEX.rank < Grade.MAJOR.rank


def test_defaults_match_domain() -> None:
    r = TenantRules()
    assert r.group_threshold_households == 3
    assert r.group_window_hours == 72
    assert r.duplicate_window_hours == 72
    assert r.received_at_max_age_hours == 168
    assert "漏水" in r.category_keywords[Category.FACILITY_REPAIR]
    assert "elevator" in r.category_keywords[Category.FACILITY_REPAIR]
    assert Category.OTHER not in r.category_keywords


def test_overrides_merge_per_key_and_keep_order() -> None:
    r = TenantRules.from_overrides(
        {
            "duplicate_window_hours": 24,
            "category_keywords": {"noise": ["吵闹", " 吵闹 ", "bang"], "environment": []},
        }
    )
    assert r.duplicate_window_hours == 24
    assert r.category_keywords[Category.NOISE] == ("吵闹", "bang")
    assert r.category_keywords[Category.ENVIRONMENT] == ()
    assert (
        r.category_keywords[Category.PARKING] == DEFAULT_RULES.category_keywords[Category.PARKING]
    )
    assert list(r.category_keywords) == [c for c in Category if c is not Category.OTHER]
    assert r.group_threshold_households == 3


def test_none_overrides_are_defaults_and_round_trip() -> None:
    assert TenantRules.from_overrides(None) == DEFAULT_RULES
    assert TenantRules.from_overrides(DEFAULT_RULES.to_overrides()) == DEFAULT_RULES


def test_rules_are_immutable() -> None:
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        DEFAULT_RULES.group_threshold_households = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        (
            {"group_threshold_households": 1},
            "rules.group_threshold_households",
            "greater_than_equal",
        ),
        ({"group_window_hours": 0}, "rules.group_window_hours", "greater_than_equal"),
        ({"duplicate_window_hours": "soon"}, "rules.duplicate_window_hours", "int_parsing"),
        (
            {"content_similarity_threshold": 1.5},
            "rules.content_similarity_threshold",
            "less_than_equal",
        ),
        ({"bogus": 1}, "rules.bogus", "extra_forbidden"),
        ({"category_keywords": {"plumbing": ["x"]}}, "rules.category_keywords.plumbing", "enum"),
        ({"category_keywords": {"noise": [""]}}, "rules.category_keywords.noise", "value_error"),
        ({"category_keywords": {"noise": "吵"}}, "rules.category_keywords.noise", "value_error"),
        ({"category_keywords": {"noise": [3]}}, "rules.category_keywords.noise", "value_error"),
        (
            {"category_keywords": {"noise": ["x" * 51]}},
            "rules.category_keywords.noise",
            "value_error",
        ),
        ({"category_keywords": {"other": ["x"]}}, "rules.category_keywords", "value_error"),
        ({"category_keywords": ["noise"]}, "rules.category_keywords", "dict_type"),
        ({"major_keywords": {"injury": None}}, "rules.major_keywords.injury", "value_error"),
        ({"complex_keywords": {"rudeness": []}}, "rules.complex_keywords.rudeness", "enum"),
    ],
)
def test_invalid_overrides_are_rejected_naming_the_field(
    overrides: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(RulesError) as info:
        TenantRules.from_overrides(overrides)
    errors = info.value.as_field_errors()
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in errors
    ], errors
    assert all(e["message"] for e in errors)


def test_written_rules_give_numbers_as_numbers_and_stored_ones_still_load() -> None:
    for written in ({"group_window_hours": "72"}, {"group_threshold_households": "5"}):
        with pytest.raises(RulesError) as info:
            TenantRules.from_written_overrides(written)
        (name,) = written
        assert info.value.as_field_errors() == [
            {
                "field": f"rules.{name}",
                "rule": "int_type",
                "message": "must be a JSON integer such as 72, not text or a boolean",
            }
        ]
        # Rules a tenant saved before the check still apply as they did.
        assert getattr(TenantRules.from_overrides(written), name) == int(written[name])
    with pytest.raises(RulesError, match="JSON number"):
        TenantRules.from_written_overrides({"content_similarity_threshold": "0.5"})
    # Every fault of a write at once, the text one and pydantic's own.
    with pytest.raises(RulesError) as info:
        TenantRules.from_written_overrides({"group_window_hours": "72", "colour": "red"})
    assert [v.field for v in info.value.violations] == [
        "rules.group_window_hours",
        "rules.colour",
    ]
    rules = TenantRules.from_written_overrides(
        {"group_window_hours": 48, "content_similarity_threshold": 1}
    )
    assert (rules.group_window_hours, rules.content_similarity_threshold) == (48, 1.0)


def test_non_object_overrides_rejected() -> None:
    with pytest.raises(RulesError) as info:
        TenantRules.from_overrides([1, 2])  # type: ignore[arg-type]
    assert info.value.as_field_errors()[0]["field"] == "rules"


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received_at", "rule"),
    [
        (NOW, None),
        (NOW - timedelta(hours=168), None),
        (NOW - timedelta(hours=168, seconds=1), "max_age"),
        (NOW + timedelta(minutes=5), None),
        (NOW + timedelta(minutes=5, seconds=1), "not_in_future"),
        (datetime(2026, 11, 26, 20, 0, tzinfo=timezone(timedelta(hours=8))), None),
        (datetime(2026, 11, 26, 12, 0), "timezone_required"),
    ],
)
def test_received_at_window(received_at: datetime, rule: str | None) -> None:
    violation = check_received_at(received_at, NOW, DEFAULT_RULES)
    assert (violation.rule if violation else None) == rule
    if violation:
        assert violation.field == "received_at"
