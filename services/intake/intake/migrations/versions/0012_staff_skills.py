"""intake: staff keep their skills, so a re-run of onboarding that changes only them is seen

The onboarding document's `staff[].skills` (what dispatch assigns by: a complaint's
category among a handler's skills) went out in `staff.upserted` but was not stored: a
document that changed nothing but a member's skills was reported unchanged, emitted
nothing, and dispatch kept the old skills for ever. Rows onboarded before hold none; the
next onboarding of a document that lists skills reports them changed and sends them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE intake.staff ADD COLUMN skills text[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE intake.staff DROP COLUMN skills")
