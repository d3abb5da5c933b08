"""Keyword matching over Chinese and English complaint text.

Chinese has no word boundaries, so a Chinese keyword matches as a substring. An English
keyword matches whole words with a few inflections ("leak" matches "leaks", "leaked",
"leaking"; "fee" does not match "feedback"); a phrase matches across any whitespace.
Text is NFKC-normalised first (full-width letters and digits become ASCII) and compared
case-insensitively; curly apostrophes count as straight ones ("lawyer’s letter").

`find_keywords(..., honour_negation=True)` skips an occurrence that is plainly negated
("没有受伤", "无人受伤", "no one was injured", "not injured"). Detection is deliberately
shallow (a negating word right before a Chinese keyword, one of the three words before an
English one), so it
errs towards keeping the trigger: a missed negation over-grades, never under-grades.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# A Chinese keyword is negated when the text right before it ends with one of these.
_CJK_NEGATION_PREFIXES = (
    "没", "没有", "没有人", "没人", "未", "未曾", "并未", "并没有",
    "无", "无人", "不", "不会", "非",
)  # fmt: skip
_EN_NEGATORS = frozenset({"no", "not", "never", "nobody", "without", "none", "neither", "nor"})
_EN_WORD = re.compile(r"[a-z0-9']+")


@lru_cache(maxsize=8192)
def normalize_text(text: str) -> str:
    """NFKC, lower case, curly quotes straightened. Cached: one complaint's text is matched
    by classification, grading and duplicate detection, and each recent case's text again
    for every new complaint of its project."""
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")


def is_ascii_keyword(keyword: str) -> bool:
    return keyword.isascii()


@lru_cache(maxsize=4096)
def _english_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in keyword.split()]
    body = r"\s+".join(words)
    # Inflections only on the last word, and only when it ends in a letter.
    suffix = r"(?:s|es|ed|d|ing)?" if keyword[-1:].isalpha() else ""
    return re.compile(rf"(?<![a-z0-9]){body}{suffix}(?![a-z0-9])")


def _occurrences(text: str, keyword: str) -> Iterable[int]:
    """Start offsets of `keyword` (already normalised) in normalised `text`."""
    if is_ascii_keyword(keyword):
        for m in _english_pattern(keyword).finditer(text):
            yield m.start()
        return
    start = text.find(keyword)
    while start != -1:
        yield start
        start = text.find(keyword, start + 1)


def _negated(text: str, start: int, keyword: str) -> bool:
    if is_ascii_keyword(keyword):
        before = _EN_WORD.findall(text[max(0, start - 60) : start])[-3:]
        return any(w in _EN_NEGATORS or w.endswith("n't") for w in before)
    return text[max(0, start - 4) : start].endswith(_CJK_NEGATION_PREFIXES)


@lru_cache(maxsize=8192)
def _prepared(keyword: str) -> tuple[str, str]:
    """(the normalised keyword, a substring every occurrence contains). Rules hold a few
    hundred keywords, each tried against every complaint: normalising them once and
    skipping the absent ones by a plain substring test is most of the matching time."""
    key = normalize_text(keyword).strip()
    return key, (key.split() or [""])[0]


def find_keywords(
    text: str, keywords: Iterable[str], *, honour_negation: bool = False
) -> tuple[str, ...]:
    """The keywords (as given, in the given order, without repeats) found in `text`."""
    if isinstance(keywords, tuple):
        # The rules' keyword lists are tuples: the same text meets the same list many
        # times (a recent case against every new complaint of its building).
        return _find_keywords_cached(text, keywords, honour_negation)
    return _find_keywords(text, keywords, honour_negation)


@lru_cache(maxsize=8192)
def _find_keywords_cached(
    text: str, keywords: tuple[str, ...], honour_negation: bool
) -> tuple[str, ...]:
    return _find_keywords(text, keywords, honour_negation)


def _find_keywords(text: str, keywords: Iterable[str], honour_negation: bool) -> tuple[str, ...]:
    norm = normalize_text(text)
    found: list[str] = []
    seen: set[str] = set()
    for keyword in keywords:
        key, probe = _prepared(keyword)
        if not key or key in seen or probe not in norm:
            continue
        for start in _occurrences(norm, key):
            if honour_negation and _negated(norm, start, key):
                continue
            found.append(keyword)
            seen.add(key)
            break
    return tuple(found)


def joined_text(*parts: str | None) -> str:
    """Content and demand searched as one text; a newline keeps phrases from spanning them."""
    return "\n".join(p for p in parts if p)
