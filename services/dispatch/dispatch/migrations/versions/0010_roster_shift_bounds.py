"""dispatch: a roster shift's times are finite and within the calendar's years

`POST /v1/rosters/shifts` took any time: 0001-01-01T00:00:00+00:00 was stored as
-infinity, 9999-12-31T23:59:59.999999+00:00 as infinity, and asyncpg reads those back as
naive datetimes that no aware instant compares with, so the project's on-duty view and
the dispatch of its complaints failed on every call. The API now refuses shift times
outside the years 2000 to 2100 (in the time's own offset); this check is the database's
backstop, a little wider (UTC, from 1999-12-31 to 2101-01-02) so that every offset the
API accepts fits.

NOT VALID: rows stored before are left as they are (checking them would fail the
upgrade on a database that has one), and new or changed rows are checked. The readers
clamp shift times to the hour they ask about (`store.dispatching.SHIFT_TIMES`), so such
old rows break nothing. Once they are deleted, `ALTER TABLE dispatch.roster_shifts
VALIDATE CONSTRAINT roster_shifts_within_bounds` makes the check cover every row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE dispatch.roster_shifts ADD CONSTRAINT roster_shifts_within_bounds CHECK"
        " (starts_at >= '1999-12-31 00:00:00+00' AND ends_at <= '2101-01-02 00:00:00+00')"
        " NOT VALID"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE dispatch.roster_shifts DROP CONSTRAINT IF EXISTS roster_shifts_within_bounds"
    )
