"""Retention: what `payment-window prune` deletes is found by index, and the relay's claim reads
only due, undelivered rows, whatever the size of the outbox.

Indexes are built CONCURRENTLY on PostgreSQL (no write waits for them), outside the
migration's transaction, as PostgreSQL requires.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = "delivered_at IS NULL AND cancelled_at IS NULL"
CANCELLED = "cancelled_at IS NOT NULL"


def _drop_if_invalid(name: str) -> None:
    """A CONCURRENTLY build that was interrupted (a lock timeout, a failover) leaves an INVALID
    index behind: drop it, so this run builds it again instead of skipping it."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    invalid = bind.execute(
        sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = :name AND NOT i.indisvalid"
            " AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"name": name},
    ).first()
    if invalid:
        op.execute(sa.text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))


def _unbounded_lock_wait() -> None:
    """A CONCURRENTLY build waits for every older transaction in the database; while it waits
    it blocks no reader or writer (its lock conflicts with neither), so it is not bounded by
    PW_MIGRATION_LOCK_TIMEOUT_SECONDS the way a migration taking a table lock is."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("SET lock_timeout = 0"))


def _bounded_lock_wait() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("RESET lock_timeout"))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _unbounded_lock_wait()
        for name in ("ix_outbox_due", "ix_outbox_cancelled_at", "ix_stripe_events_received_at"):
            _drop_if_invalid(name)
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
        _bounded_lock_wait()


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _unbounded_lock_wait()
        for name, table in (
            ("ix_stripe_events_received_at", "stripe_events"),
            ("ix_outbox_cancelled_at", "outbox"),
            ("ix_outbox_due", "outbox"),
        ):
            op.drop_index(name, table, postgresql_concurrently=True, if_exists=True)
        _bounded_lock_wait()
