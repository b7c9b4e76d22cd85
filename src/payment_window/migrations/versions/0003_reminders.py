"""Buyer reminders before the deadline: which were sent, and when the next is due.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_sessions") as table:
        table.add_column(sa.Column("reminders_sent", sa.JSON, nullable=False, server_default="[]"))
        table.add_column(sa.Column("next_reminder_at", UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_sessions") as table:
        table.drop_column("next_reminder_at")
        table.drop_column("reminders_sent")
