"""dispatch: index work orders by department code, for a department's board

`GET /v1/departments/{code}/board` reads a department code's open orders, and answers
404 for a code that is no department and on no order. Neither had an index: each read
every work order of the tenant (row-level security adds the tenant, nothing narrowed the
rest), a property company's whole history on every look at a board.

Built CONCURRENTLY, outside the migration's transaction, so dispatch keeps writing orders
while it builds on a large table. A build that was interrupted leaves an invalid index
behind; it is dropped and built again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "dispatch.work_orders_department_code"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        invalid = (
            op.get_bind()
            .execute(
                sa.text(
                    "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"
                ),
                {"name": INDEX},
            )
            .scalar()
        )
        if invalid:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS work_orders_department_code"
            " ON dispatch.work_orders (tenant_id, department_code, state)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
