"""When a complaint may say it was received (DOMAIN.md: record within 3 minutes of receipt;
callers such as call centers send the receipt time of their own ticket).

A receipt time must carry a time zone, must not lie more than
`received_at_max_age_hours` in the past (a stale batch would start clocks already
breached) nor more than `received_at_max_future_minutes` in the future (clock skew).
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
