from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from intake.domain.matching import (
    CaseFacts,
    content_similarity,
    detect_group,
    find_duplicate,
    household_key,
    normalize_building,
    normalize_phone,
    same_matter,
)
from intake.domain.rules import DEFAULT_RULES, TenantRules
from intake.domain.vocabulary import Category

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PROJECT = "p1"


def case(
    id: str | None,
    household: str | None = "unit:101",
    *,
    content: str = "5栋电梯坏了，困在里面",
    category: Category = Category.FACILITY_REPAIR,
    building: str | None = None,
    place: str | None = None,
    hours: float = 0,
    phone: str | None = None,
    is_open: bool = True,
    group: str | None = None,
    project: str = PROJECT,
) -> CaseFacts:
    return CaseFacts(
        id=id,
        project_id=project,
        household=household,
        phone=phone,
        category=category,
        building=building,
        place=place,
        content=content,
        received_at=T0 + timedelta(hours=hours),
        is_open=is_open,
        group_case_id=group,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138-0013-8000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("13800138000", "13800138000"),
        ("021-5555 1234", "02155551234"),
        ("８６１３８００１３８０００", "13800138000"),
        ("", None),
        (None, None),
        ("n/a", None),
    ],
)
def test_normalize_phone(raw: str | None, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_household_key_prefers_unit() -> None:
    assert household_key("u1", "13800138000") == "unit:u1"
    assert household_key(None, "+8613800138000") == "phone:13800138000"
    assert household_key(None, None) is None


@pytest.mark.parametrize(
    ("a", "b"), [("5栋", "5号楼"), ("Building 5", "5幢"), ("５栋", "5 #"), ("A座", "a")]
)
def test_building_normalization(a: str, b: str) -> None:
    assert normalize_building(a) == normalize_building(b)


@pytest.mark.parametrize(
    ("a", "b", "at_least", "below"),
    [
        ("5栋电梯坏了，困在里面", "5栋的电梯又坏了，有人困在里面", 0.3, None),
        ("The elevator in block 5 is broken", "Block 5 elevator broken again", 0.3, None),
        ("5栋电梯坏了", "楼下垃圾没人收", None, 0.1),
        ("The elevator is broken", "Garbage everywhere near the gate", None, 0.1),
        ("", "电梯坏了", None, 0.01),
    ],
)
def test_content_similarity(a: str, b: str, at_least: float | None, below: float | None) -> None:
    s = content_similarity(a, b)
    if at_least is not None:
        assert s >= at_least
    if below is not None:
        assert s < below


class TestSameMatter:
    def test_same_place(self) -> None:
        a = case("a", place="3号楼 东门", content="门口水管爆了")
        b = case("b", place="3号楼东门", content="到处是水，快来修")
        m = same_matter(a, b, DEFAULT_RULES, window_hours=72)
        assert m is not None and m.basis == "place"

    def test_same_building_needs_a_shared_keyword(self) -> None:
        a = case("a", building="5栋", content="电梯停了")
        b = case("b", building="5号楼", content="电梯按钮没反应")
        c = case("c", building="5栋", content="家里厨房漏水")
        m = same_matter(a, b, DEFAULT_RULES, window_hours=72)
        assert m is not None and m.basis == "building" and m.shared_keywords == ("电梯",)
        assert same_matter(a, c, DEFAULT_RULES, window_hours=72) is None

    def test_similar_content(self) -> None:
        a = case("a", content="The elevator in block 5 is broken")
        b = case("b", content="Block 5 elevator broken since morning")
        m = same_matter(a, b, DEFAULT_RULES, window_hours=72)
        assert m is not None and m.basis == "content"

    @pytest.mark.parametrize(
        "other",
        [
            {"category": Category.NOISE},
            {"project": "p2"},
            {"hours": 72.01},
            {"hours": -72.01},
        ],
    )
    def test_not_same_matter(self, other: dict[str, object]) -> None:
        a = case("a", place="5栋电梯")
        b = case("b", place="5栋电梯", **other)  # type: ignore[arg-type]
        assert same_matter(a, b, DEFAULT_RULES, window_hours=72) is None

    @pytest.mark.parametrize("hours", [72, -72, 0])
    def test_window_is_inclusive(self, hours: float) -> None:
        a = case("a", place="5栋电梯")
        b = case("b", place="5栋电梯", hours=hours)
        assert same_matter(a, b, DEFAULT_RULES, window_hours=72) is not None


class TestFindDuplicate:
    def test_same_household_open_same_matter_joins(self) -> None:
        old = case("old", hours=-5)
        new = case(None)
        dup = find_duplicate(new, [old], DEFAULT_RULES)
        assert dup is not None and dup.case_id == "old"
        assert "same household" in dup.reason

    def test_same_phone_different_household_key(self) -> None:
        old = case("old", household=None, phone="+86 138 0013 8000", hours=-1)
        new = case(None, household="phone:13800138000", phone="13800138000")
        dup = find_duplicate(new, [old], DEFAULT_RULES)
        assert dup is not None and "same phone" in dup.reason

    @pytest.mark.parametrize(
        "old",
        [
            case("closed", is_open=False, hours=-1),
            case("other-household", household="unit:202", hours=-1),
            case("other-category", category=Category.NOISE, hours=-1),
            case("other-matter", content="物业费账单多收了", hours=-1),
            case("too-old", hours=-72.5),
        ],
    )
    def test_not_a_duplicate(self, old: CaseFacts) -> None:
        assert find_duplicate(case(None), [old], DEFAULT_RULES) is None

    def test_window_is_tenant_settable(self) -> None:
        old = case("old", hours=-30)
        rules = TenantRules.from_overrides({"duplicate_window_hours": 24})
        assert find_duplicate(case(None), [old], rules) is None
        assert find_duplicate(case(None), [old], DEFAULT_RULES) is not None

    def test_most_recent_match_wins(self) -> None:
        cases = [case("a", hours=-10), case("c", hours=-2), case("b", hours=-5)]
        dup = find_duplicate(case(None), cases, DEFAULT_RULES)
        assert dup is not None and dup.case_id == "c"

    def test_no_household_no_phone_never_duplicates(self) -> None:
        old = case("old", household=None, hours=-1)
        assert find_duplicate(case(None, household=None), [old], DEFAULT_RULES) is None


class TestDetectGroup:
    def test_two_households_is_not_a_group(self) -> None:
        recent = [case("a", "unit:201", hours=-3)]
        assert detect_group(case(None, "unit:101"), recent, DEFAULT_RULES) is None

    def test_three_households_is_a_group(self) -> None:
        recent = [case("b", "unit:301", hours=-1), case("a", "unit:201", hours=-3)]
        g = detect_group(case("new", "unit:101"), recent, DEFAULT_RULES)
        assert g is not None
        assert g.size == 3
        assert g.member_case_ids == ("a", "b")  # oldest first
        assert g.group_case_id is None
        assert set(g.households) == {"unit:101", "unit:201", "unit:301"}

    def test_same_household_thrice_is_not_a_group(self) -> None:
        recent = [case("a", "unit:101", hours=-1), case("b", "unit:101", hours=-2)]
        assert detect_group(case(None, "unit:101"), recent, DEFAULT_RULES) is None

    def test_anonymous_cases_do_not_count(self) -> None:
        recent = [case("a", "unit:201", hours=-1), case("b", None, hours=-2)]
        assert detect_group(case(None, "unit:101"), recent, DEFAULT_RULES) is None

    def test_anonymous_member_is_linked_once_group_exists(self) -> None:
        recent = [
            case("a", "unit:201", hours=-1),
            case("b", None, hours=-2),
            case("c", "unit:301", hours=-3),
        ]
        g = detect_group(case(None, "unit:101"), recent, DEFAULT_RULES)
        assert g is not None and set(g.member_case_ids) == {"a", "b", "c"} and g.size == 3

    def test_window_boundary(self) -> None:
        inside = [case("a", "unit:201", hours=-72), case("b", "unit:301", hours=-1)]
        outside = [case("a", "unit:201", hours=-72.01), case("b", "unit:301", hours=-1)]
        assert detect_group(case(None, "unit:101"), inside, DEFAULT_RULES) is not None
        assert detect_group(case(None, "unit:101"), outside, DEFAULT_RULES) is None

    def test_other_matters_do_not_count(self) -> None:
        recent = [
            case("a", "unit:201", hours=-1),
            case("b", "unit:301", content="物业费账单多收了", category=Category.FEES),
        ]
        assert detect_group(case(None, "unit:101"), recent, DEFAULT_RULES) is None

    def test_joins_existing_group_even_below_threshold(self) -> None:
        recent = [case("a", "unit:201", hours=-1, group="G1")]
        g = detect_group(case(None, "unit:101"), recent, DEFAULT_RULES)
        assert g is not None and g.group_case_id == "G1" and g.member_case_ids == ("a",)

    def test_most_common_existing_group_wins(self) -> None:
        recent = [
            case("a", "unit:201", hours=-5, group="G1"),
            case("b", "unit:301", hours=-3, group="G2"),
            case("c", "unit:401", hours=-2, group="G2"),
        ]
        g = detect_group(case(None, "unit:101"), recent, DEFAULT_RULES)
        assert g is not None and g.group_case_id == "G2"

    def test_closed_cases_count(self) -> None:
        recent = [case("a", "unit:201", is_open=False), case("b", "unit:301", hours=-1)]
        assert detect_group(case(None, "unit:101"), recent, DEFAULT_RULES) is not None

    def test_threshold_is_per_tenant(self) -> None:
        rules = TenantRules.from_overrides({"group_threshold_households": 4})
        recent = [case("b", "unit:301", hours=-1), case("a", "unit:201", hours=-3)]
        assert detect_group(case(None, "unit:101"), recent, rules) is None

    def test_english_group(self) -> None:
        recent = [
            case("a", "unit:201", content="Block 5 elevator broken again", hours=-1),
            case("b", "unit:301", content="elevator in block 5 broken, kids stuck", hours=-2),
        ]
        new = case(None, "unit:101", content="The elevator in block 5 is broken")
        assert detect_group(new, recent, DEFAULT_RULES) is not None

    def test_new_case_itself_in_recent_is_ignored(self) -> None:
        new = case("n", "unit:101")
        recent = [replace(new), case("a", "unit:201", hours=-1)]
        assert detect_group(new, recent, DEFAULT_RULES) is None


class TestEarlierCase:
    from datetime import UTC as _UTC
    from datetime import datetime as _dt

    NOW = _dt(2026, 11, 26, 12, 0, tzinfo=_UTC)

    def case(self, **over: object) -> CaseFacts:
        from intake.domain.matching import CaseFacts
        from intake.domain.vocabulary import Category

        base: dict[str, object] = {
            "id": "new",
            "project_id": "p1",
            "household": "unit:u1",
            "phone": "13800138000",
            "category": Category.FACILITY_REPAIR,
            "building": "5",
            "place": "5号楼电梯",
            "content": "5号楼电梯又坏了",
            "received_at": self.NOW,
        }
        base.update(over)
        return CaseFacts(**base)  # type: ignore[arg-type]

    def test_handled_case_of_the_household_counts_up(self) -> None:
        from datetime import timedelta

        from intake.domain.matching import find_earlier_case
        from intake.domain.rules import DEFAULT_RULES

        earlier = [
            self.case(
                id="a",
                is_open=False,
                reference="R-1",
                prior_cases=0,
                received_at=self.NOW - timedelta(days=40),
            ),
            self.case(
                id="b",
                is_open=False,
                reference="R-2",
                prior_cases=1,
                received_at=self.NOW - timedelta(days=10),
            ),
        ]
        found = find_earlier_case(self.case(), earlier, DEFAULT_RULES)
        assert found is not None and found.case_id == "b" and found.prior_cases == 2
        assert "R-2" in found.reason

    def test_open_other_household_other_matter_or_too_old_do_not_count(self) -> None:
        from datetime import timedelta

        from intake.domain.matching import find_earlier_case
        from intake.domain.rules import DEFAULT_RULES
        from intake.domain.vocabulary import Category

        earlier = [
            self.case(id="open", is_open=True, received_at=self.NOW - timedelta(days=1)),
            self.case(
                id="other",
                household="unit:u2",
                phone="139",
                is_open=False,
                received_at=self.NOW - timedelta(days=1),
            ),
            self.case(
                id="noise",
                category=Category.NOISE,
                is_open=False,
                received_at=self.NOW - timedelta(days=1),
            ),
            self.case(id="old", is_open=False, received_at=self.NOW - timedelta(days=181)),
        ]
        assert find_earlier_case(self.case(), earlier, DEFAULT_RULES) is None
