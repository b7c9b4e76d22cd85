"""A buyer's payment record, the repeat non-payers and the summary's recent closes are read
from indexes, not table scans.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UNPAID_SQL

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_payment_sessions_buyer_id_created_at",
        "payment_sessions",
        ["buyer_id", "created_at"],
    )
    op.create_index(
        "ix_payment_sessions_unpaid_created_at_buyer_id",
        "payment_sessions",
        ["created_at", "buyer_id"],
        postgresql_where=sa.text(UNPAID_SQL),
        sqlite_where=sa.text(UNPAID_SQL),
    )
    op.create_index(
        "ix_payment_sessions_unpaid_expired_at",
        "payment_sessions",
        ["expired_at"],
        postgresql_where=sa.text(UNPAID_SQL),
        sqlite_where=sa.text(UNPAID_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_sessions_unpaid_expired_at", "payment_sessions")
    op.drop_index("ix_payment_sessions_unpaid_created_at_buyer_id", "payment_sessions")
    op.drop_index("ix_payment_sessions_buyer_id_created_at", "payment_sessions")
