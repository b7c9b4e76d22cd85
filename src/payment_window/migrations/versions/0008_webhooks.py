"""Outgoing webhooks: each endpoint's state (last success, failures, disabled by a 410) and
parked outbox messages (a webhook message that failed for three days waits for an operator).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("destination", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("last_success_at", UtcDateTime, nullable=True),
        sa.Column("last_failure_at", UtcDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("disabled_at", UtcDateTime, nullable=True),
        sa.Column("disabled_reason", sa.Text, nullable=True),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("parked_at", UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_at")
    op.drop_table("webhook_endpoints")
