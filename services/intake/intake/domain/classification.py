"""Category by content (DOMAIN.md "Classification", 3. Category).

Deterministic keyword scoring: each category scores the number of its distinct keywords
found in the content and the demand (要求). The highest score wins; a tie goes to the
category declared first in the tenant's rules (the `Category` declaration order). No hit
gives `other` with a reason saying so. A category the caller (clerk, call center) gives
always wins: people who heard the complaint know better than keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

from intake.domain.keywords import find_keywords, joined_text
from intake.domain.rules import TenantRules
from intake.domain.vocabulary import Category

GIVEN_BY_CALLER = "given by caller"


@dataclass(frozen=True, slots=True)
class CategoryDecision:
    category: Category
    reason: str
    matched: tuple[str, ...] = ()


def classify_category(
    content: str,
    demand: str | None,
    rules: TenantRules,
    *,
    given: Category | str | None = None,
) -> CategoryDecision:
    """The category of a complaint; `given` (a `Category` or its code) wins when present.

    Raises ValueError when `given` is not a known category code (the API layer validates
    it first and answers 422).
    """
    if given is not None and given != "":
        return CategoryDecision(Category(given), GIVEN_BY_CALLER)
    text = joined_text(content, demand)
    best: Category | None = None
    best_hits: tuple[str, ...] = ()
    for category, keywords in rules.category_keywords.items():
        hits = find_keywords(text, keywords)
        if len(hits) > len(best_hits):
            best, best_hits = category, hits
    if best is None:
        return CategoryDecision(Category.OTHER, "no category keyword matched")
    return CategoryDecision(
        best,
        f"keywords matched: {', '.join(best_hits)} ({len(best_hits)} hit(s))",
        best_hits,
    )
