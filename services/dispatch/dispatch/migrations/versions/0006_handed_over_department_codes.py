"""dispatch: work orders handed over to another department carry that department's code

Accepting a hand-over moved the order's department_id to the receiver's department but
left department_code as it was, so the order was on no department head's board (it
reads both). The code now follows on accept; this repairs the orders already moved.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every tenant's rows: the work orders' policy admits the platform's system context.
    op.execute("SELECT set_config('app.system', 'on', true)")
    op.execute(
        "UPDATE dispatch.work_orders w SET department_code = d.code"
        " FROM dispatch.departments d"
        " WHERE d.id = w.department_id AND d.tenant_id = w.tenant_id"
        " AND w.department_code IS DISTINCT FROM d.code"
    )
    op.execute("SELECT set_config('app.system', '', true)")


def downgrade() -> None:
    pass  # the stale codes are not worth restoring
