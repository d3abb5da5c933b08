"""Same matter, duplicates and group complaints (DOMAIN.md: "the same matter is not asked
twice"; group complaint = three or more households on the same matter).

Two cases concern the **same matter** when they are in the same project, have the same
category, were received within the window of each other (inclusive), and at least one of:
  1. the same place (normalised: NFKC, case, spaces and punctuation ignored);
  2. the same building and at least one shared category keyword (two complaints in
     building 5 about 电梯 are one matter; a leaking pipe and a broken lift in building 5
     are two);
  3. similar content: Jaccard similarity of the token sets >= `content_similarity_threshold`
     (default 0.3). Tokens are character bigrams of each run of Chinese characters (Chinese
     has no word boundaries; bigrams are the usual cheap proxy for words) plus English words
     of three or more letters minus a few stop words, so mixed text works too.

**Duplicate** (`find_duplicate`): the new complaint is from the same household (unit) or
the same phone as an *open* case on the same matter within `duplicate_window_hours`; the
new record joins that case instead of opening another. When several match, the most
recently received wins (then the greater id, for determinism).

**Group** (`detect_group`): the recent cases on the same matter within
`group_window_hours`, counted by distinct household *including the new complaint*, reach
`group_threshold_households`. Cases without a household key (anonymous) are linked but not
counted, since they may be one of the counted households. When a matching case already
belongs to a group, the new case joins that group whatever the count: the group exists.
Open and closed cases both count: a matter three households raised is a group even when one
case was closed quickly.

**Earlier case** (`find_earlier_case`, 二次投诉): a *handled* (no longer open) case of the
same household or phone on the same matter within `repeat_window_days`: the complainant is
back, so the earlier handling did not satisfy. The new complaint's round is the earlier
case's `prior_cases` + 1, so a chain of complaints counts up across windows.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal
from uuid import UUID

from intake.domain.keywords import find_keywords, normalize_text
from intake.domain.rules import TenantRules
from intake.domain.vocabulary import Category

CaseId = UUID | str
MatterBasis = Literal["place", "building", "content"]

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_EN_WORD = re.compile(r"[a-z][a-z']{2,}")
_EN_STOP = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "was",
        "were",
        "are",
        "has",
        "have",
        "had",
        "not",
        "but",
        "our",
        "your",
        "its",
        "from",
        "there",
        "they",
        "them",
        "been",
        "again",
        "very",
        "please",
        "can",
        "you",
        "all",
        "any",
        "who",
        "what",
        "when",
    }
)
_BUILDING_NOISE = re.compile(r"(building|bldg|block|tower|no\.|栋|幢|号楼|座|楼|号|#|\s)")
_PLACE_NOISE = re.compile(r"[\s\W_]+")


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What matching needs to know of a case (the new complaint or a stored one)."""

    id: CaseId | None
    project_id: CaseId
    household: str | None  # `household_key(unit_id, phone)`
    phone: str | None
    category: Category
    building: str | None
    place: str | None
    content: str
    received_at: datetime
    is_open: bool = True
    group_case_id: CaseId | None = None
    reference: str | None = None
    prior_cases: int = 0  # handled cases on the matter before this one


@dataclass(frozen=True, slots=True)
class EarlierCase:
    case_id: CaseId
    reference: str | None
    prior_cases: int  # for the new complaint: the earlier case's own count + 1
    reason: str


@dataclass(frozen=True, slots=True)
class MatterMatch:
    basis: MatterBasis
    similarity: float
    shared_keywords: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        if self.basis == "place":
            return "same place"
        if self.basis == "building":
            return f"same building, both mention {', '.join(self.shared_keywords)}"
        return f"similar content (similarity {self.similarity:.2f})"


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    case_id: CaseId
    match: MatterMatch
    reason: str


@dataclass(frozen=True, slots=True)
class GroupDecision:
    member_case_ids: tuple[CaseId, ...]  # existing cases to link (and upgrade to major)
    households: tuple[str, ...]  # distinct households, the new complaint's included
    group_case_id: CaseId | None  # an existing group to join; None = start a new group
    reason: str

    @property
    def size(self) -> int:
        return len(self.households)


# Each recent case of a project is compared with every new complaint of that project: the
# per-text derivations below are pure, so a process keeps them instead of redoing them.
_CACHE = 16_384


@lru_cache(maxsize=_CACHE)
def normalize_phone(phone: str | None) -> str | None:
    """Digits only, without the China country code: '+86 138-0013-8000' → '13800138000'."""
    if not phone:
        return None
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", phone) if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            digits = digits[len(prefix) :]
    return digits or None


def household_key(unit_id: CaseId | None, phone: str | None) -> str | None:
    """The household a complaint comes from: its unit when known, else its phone."""
    if unit_id:
        return f"unit:{unit_id}"
    normalized = normalize_phone(phone)
    return f"phone:{normalized}" if normalized else None


@lru_cache(maxsize=_CACHE)
def normalize_building(building: str | None) -> str | None:
    """'5栋', '5号楼', 'Building 5', '５幢' → '5'."""
    if not building:
        return None
    return _BUILDING_NOISE.sub("", normalize_text(building)) or None


@lru_cache(maxsize=_CACHE)
def normalize_place(place: str | None) -> str | None:
    if not place:
        return None
    return _PLACE_NOISE.sub("", normalize_text(place)) or None


@lru_cache(maxsize=_CACHE)
def content_tokens(text: str) -> frozenset[str]:
    norm = normalize_text(text)
    tokens: set[str] = set()
    for run in _CJK_RUN.findall(norm):
        if len(run) == 1:
            tokens.add(run)
        tokens.update(run[i : i + 2] for i in range(len(run) - 1))
    tokens.update(w for w in _EN_WORD.findall(norm) if w not in _EN_STOP)
    return frozenset(tokens)


def content_similarity(a: str, b: str) -> float:
    """Jaccard similarity of `content_tokens`; 0.0 when either side has no tokens."""
    ta, tb = content_tokens(a), content_tokens(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def _within(a: datetime, b: datetime, hours: int) -> bool:
    return abs(a - b) <= timedelta(hours=hours)


def same_matter(
    a: CaseFacts, b: CaseFacts, rules: TenantRules, *, window_hours: int
) -> MatterMatch | None:
    """How `a` and `b` are the same matter, or None when they are not (see module doc)."""
    if a.category != b.category or (
        # Ids are UUIDs or their text; compare as text only when the plain test says no.
        a.project_id != b.project_id and str(a.project_id) != str(b.project_id)
    ):
        return None
    if not _within(a.received_at, b.received_at, window_hours):
        return None
    similarity = content_similarity(a.content, b.content)
    place_a, place_b = normalize_place(a.place), normalize_place(b.place)
    if place_a and place_a == place_b:
        return MatterMatch("place", similarity)
    building_a, building_b = normalize_building(a.building), normalize_building(b.building)
    if building_a and building_a == building_b:
        keywords = rules.category_keywords.get(a.category, ())
        hits_a = find_keywords(a.content, keywords)
        hits_b = set(find_keywords(b.content, keywords))
        shared = tuple(k for k in hits_a if k in hits_b)
        if shared:
            return MatterMatch("building", similarity, shared)
    if similarity >= rules.content_similarity_threshold:
        return MatterMatch("content", similarity)
    return None


def find_duplicate(
    new: CaseFacts, open_cases: Sequence[CaseFacts], rules: TenantRules
) -> DuplicateMatch | None:
    """The open case the new complaint repeats (same household or phone, same matter)."""
    new_phone = normalize_phone(new.phone)
    best: tuple[CaseFacts, MatterMatch] | None = None
    for case in open_cases:
        if not case.is_open or case.id is None or case.id == new.id:
            continue
        same_household = new.household is not None and case.household == new.household
        same_phone = new_phone is not None and normalize_phone(case.phone) == new_phone
        if not (same_household or same_phone):
            continue
        match = same_matter(new, case, rules, window_hours=rules.duplicate_window_hours)
        if match is None:
            continue
        if best is None or (case.received_at, str(case.id)) > (
            best[0].received_at,
            str(best[0].id),
        ):
            best = (case, match)
    if best is None:
        return None
    case, match = best
    who = "household" if new.household and case.household == new.household else "phone"
    return DuplicateMatch(case.id, match, f"same {who}, open case, {match.reason}")  # type: ignore[arg-type]


def detect_group(
    new: CaseFacts, recent: Sequence[CaseFacts], rules: TenantRules
) -> GroupDecision | None:
    """The group complaint the new complaint makes or joins, or None (see module doc)."""
    members: list[CaseFacts] = []
    for case in recent:
        if case.id is None or case.id == new.id:
            continue
        if same_matter(new, case, rules, window_hours=rules.group_window_hours) is not None:
            members.append(case)
    if not members:
        return None
    households: list[str] = []
    for h in [new.household, *(m.household for m in members)]:
        if h is not None and h not in households:
            households.append(h)
    existing = _existing_group(members)
    threshold = rules.group_threshold_households
    if existing is None and len(households) < threshold:
        return None
    members.sort(key=lambda m: (m.received_at, str(m.id)))
    member_ids = tuple(m.id for m in members if m.id is not None)
    if existing is not None:
        reason = f"joins existing group {existing}: {len(households)} household(s) in window"
    else:
        reason = (
            f"{len(households)} households on the same matter within "
            f"{rules.group_window_hours} h (threshold {threshold})"
        )
    return GroupDecision(member_ids, tuple(households), existing, reason)


def _existing_group(members: Sequence[CaseFacts]) -> CaseId | None:
    """The group most matching members already belong to; ties → the earliest member's."""
    counts = Counter(str(m.group_case_id) for m in members if m.group_case_id is not None)
    if not counts:
        return None
    top = max(counts.values())
    for m in sorted(members, key=lambda m: (m.received_at, str(m.id))):
        if m.group_case_id is not None and counts[str(m.group_case_id)] == top:
            return m.group_case_id
    return None


def find_earlier_case(
    new: CaseFacts, earlier: Sequence[CaseFacts], rules: TenantRules
) -> EarlierCase | None:
    """The latest handled case the new complaint comes back about (see module doc)."""
    new_phone = normalize_phone(new.phone)
    window = rules.repeat_window_days * 24
    best: tuple[CaseFacts, MatterMatch] | None = None
    for case in earlier:
        if case.is_open or case.id is None or case.id == new.id:
            continue
        if case.received_at > new.received_at:
            continue
        same_household = new.household is not None and case.household == new.household
        same_phone = new_phone is not None and normalize_phone(case.phone) == new_phone
        if not (same_household or same_phone):
            continue
        match = same_matter(new, case, rules, window_hours=window)
        if match is None:
            continue
        if best is None or (case.prior_cases, case.received_at, str(case.id)) > (
            best[0].prior_cases,
            best[0].received_at,
            str(best[0].id),
        ):
            best = (case, match)
    if best is None:
        return None
    case, match = best
    label = case.reference or str(case.id)
    return EarlierCase(
        case.id,  # type: ignore[arg-type]
        case.reference,
        case.prior_cases + 1,
        f"earlier case {label} of the same household was handled; {match.reason}",
    )
