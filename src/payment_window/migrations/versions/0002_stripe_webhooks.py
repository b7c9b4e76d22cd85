"""Every Checkout Session a window ever had, and the Stripe events already acted on.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkout_sessions",
        sa.Column("checkout_session_id", sa.String(255), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_checkout_sessions_session_id", "checkout_sessions", ["session_id"])
    # Windows opened before this revision: their current session is the only one on record.
    op.execute(
        "INSERT INTO checkout_sessions (checkout_session_id, session_id, created_at) "
        "SELECT checkout_session_id, id, updated_at FROM payment_sessions "
        "WHERE checkout_session_id IS NOT NULL"
    )
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stripe_events")
    op.drop_table("checkout_sessions")
