"""Retention: what `payment-window prune` deletes is found by index, and the relay's claim reads
only due, undelivered rows, whatever the size of the outbox.

Indexes are built CONCURRENTLY on PostgreSQL (no write waits for them), outside the
migration's transaction, as PostgreSQL requires.

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = "delivered_at IS NULL AND cancelled_at IS NULL"
CANCELLED = "cancelled_at IS NOT NULL"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # The relay's claim: due rows of the destinations it serves, earliest first.
        op.create_index(
            "ix_outbox_due",
            "outbox",
            ["destination", "next_attempt_at"],
            postgresql_where=sa.text(PENDING),
            sqlite_where=sa.text(PENDING),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        # Prune: cancelled rows by when they were cancelled (delivered ones use ix_outbox_pending).
        op.create_index(
            "ix_outbox_cancelled_at",
            "outbox",
            ["cancelled_at"],
            postgresql_where=sa.text(CANCELLED),
            sqlite_where=sa.text(CANCELLED),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_stripe_events_received_at",
            "stripe_events",
            ["received_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table in (
            ("ix_stripe_events_received_at", "stripe_events"),
            ("ix_outbox_cancelled_at", "outbox"),
            ("ix_outbox_due", "outbox"),
        ):
            op.drop_index(name, table, postgresql_concurrently=True, if_exists=True)
