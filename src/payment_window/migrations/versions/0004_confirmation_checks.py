"""Windows awaiting payment confirmation are asked about at Stripe again if no webhook comes;
the operations summary counts audit alerts by action.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_sessions") as table:
        table.add_column(sa.Column("confirmation_check_at", UtcDateTime, nullable=True))
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_action_at", "audit_log")
    with op.batch_alter_table("payment_sessions") as table:
        table.drop_column("confirmation_check_at")
