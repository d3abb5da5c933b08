"""When a complaint may say it was received (DOMAIN.md: record within 3 minutes of receipt;
callers such as call centers send the receipt time of their own ticket).

A receipt time must carry a time zone, must not lie more than
`received_at_max_age_hours` in the past (a stale batch would start clocks already
breached) nor more than `received_at_max_future_minutes` in the future (clock skew).

When the matter itself happened (`occurred_at`, optional) must carry a time zone, must not
lie after the receipt by more than the same clock-skew allowance (nothing is complained
about before it happens), nor more than `OCCURRED_AT_MAX_AGE_YEARS` before it (the longest
period within which civil rights are protected, PRC Civil Code art. 188: older is a typo).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from intake.domain.rules import RuleViolation, TenantRules


def check_received_at(
    received_at: datetime, now: datetime, rules: TenantRules, *, field: str = "received_at"
) -> RuleViolation | None:
    """None when acceptable, else the violation naming `field` and the rule broken."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        return RuleViolation(field, "timezone_required", "must include a UTC offset")
    if received_at > now + timedelta(minutes=rules.received_at_max_future_minutes):
        return RuleViolation(
            field,
            "not_in_future",
            f"must not be more than {rules.received_at_max_future_minutes} minute(s) in the future",
        )
    if received_at < now - timedelta(hours=rules.received_at_max_age_hours):
        return RuleViolation(
            field,
            "max_age",
            f"must not be more than {rules.received_at_max_age_hours} hour(s) in the past",
        )
    return None


OCCURRED_AT_MAX_AGE_YEARS = 20
_OCCURRED_AT_MAX_AGE = timedelta(days=OCCURRED_AT_MAX_AGE_YEARS * 366)


def check_occurred_at(
    occurred_at: datetime,
    received_at: datetime,
    rules: TenantRules,
    *,
    field: str = "occurred_at",
) -> RuleViolation | None:
    """None when acceptable, else the violation naming `field` and the rule broken.
    `received_at` is the complaint's (checked by `check_received_at`; a naive one is
    refused there, so only the zone of `occurred_at` is checked then)."""
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        return RuleViolation(field, "timezone_required", "must include a UTC offset")
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        return None
    # Differences, not sums: an instant near the ends of the calendar must not overflow.
    skew = timedelta(minutes=rules.received_at_max_future_minutes)
    if occurred_at - received_at > skew:
        return RuleViolation(
            field,
            "not_after_received_at",
            "must not be after received_at (by more than "
            f"{rules.received_at_max_future_minutes} minute(s) of clock skew)",
        )
    if received_at - occurred_at > _OCCURRED_AT_MAX_AGE:
        return RuleViolation(
            field,
            "max_age",
            f"must not be more than {OCCURRED_AT_MAX_AGE_YEARS} years before received_at",
        )
    return None
