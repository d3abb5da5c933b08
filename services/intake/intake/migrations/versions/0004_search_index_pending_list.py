"""intake: a small pending list for the trigram search index

The index takes new complaints into a pending list (GIN fastupdate) and merges the list
into the index when it exceeds `gin_pending_list_limit` (4 MB by default) or autovacuum
comes: the insert that crosses the limit pays the whole merge (tens of milliseconds with
Chinese text, whose every character makes trigrams), and so does a recording that waits
on it. 256 kB makes each merge a sixteenth of that, more often.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER INDEX intake.complaints_search_trgm SET (gin_pending_list_limit = 256)")


def downgrade() -> None:
    op.execute("ALTER INDEX intake.complaints_search_trgm RESET (gin_pending_list_limit)")
