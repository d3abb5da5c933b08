"""The Open311 updates feed's texts (pure)."""

from __future__ import annotations

import re
from pathlib import Path

from intake.open311.service_requests import _UPDATE_TEXT
from propdesk.events.registry import REGISTRY


def test_every_timeline_entry_has_an_update_text() -> None:
    """The feed shows a reader's text for every kind a complaint's timeline can hold (the
    complaint and work-order events, and the timeline-only entries intake writes), never a
    raw type name."""
    events = {t for t, _ in REGISTRY if t.split(".")[0] in ("complaint", "work_order")}
    events.discard("complaint.status_changed")  # announced only: its work-order step is the entry
    source = "\n".join(
        p.read_text() for p in Path(__file__).parents[1].joinpath("intake").rglob("*.py")
    )
    timeline_only = set(re.findall(r'kind="(complaint\.[a-z_]+)"', source))
    assert "complaint.regrade_withheld" in timeline_only  # the pattern still finds them
    missing = (events | timeline_only) - set(_UPDATE_TEXT)
    assert not missing, missing
