"""The values complaint events carry in `category` and `grade`.

Intake's classification produces them (`intake.domain.vocabulary` names and labels them; a
test keeps the two in step); dispatch's routing rules match on them, so a rule naming any
other value could never match and is refused.
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "facility_repair",
    "environment",
    "security",
    "parking",
    "noise",
    "fees",
    "staff_attitude",
    "landscaping",
    "decoration",
    "other",
)

GRADES: tuple[str, ...] = ("simple", "complex", "major")
