"""Payment sessions, the audit log, the outbox and maker policies.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UNSETTLED_SQL, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("auction_id", sa.String(128), nullable=False),
        sa.Column("maker_id", sa.String(128), nullable=False),
        sa.Column("buyer_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("checkout_session_id", sa.String(255), nullable=True, unique=True),
        sa.Column("checkout_url", sa.Text, nullable=True),
        sa.Column("checkout_expires_at", UtcDateTime, nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("expired_at", UtcDateTime, nullable=True),
        sa.Column("paid_at", UtcDateTime, nullable=True),
        sa.Column("extended_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("expiry_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_expiry_error", sa.Text, nullable=True),
        sa.Column("due_at", UtcDateTime, nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_payment_sessions_due_at", "payment_sessions", ["due_at"])
    op.create_index(
        "ix_payment_sessions_status_expires_at", "payment_sessions", ["status", "expires_at"]
    )
    op.create_index("ix_payment_sessions_maker_id", "payment_sessions", ["maker_id"])
    op.create_index("ix_payment_sessions_auction_id", "payment_sessions", ["auction_id"])
    op.create_index(
        "ux_payment_sessions_unsettled_auction",
        "payment_sessions",
        ["auction_id"],
        unique=True,
        postgresql_where=sa.text(UNSETTLED_SQL),
        sqlite_where=sa.text(UNSETTLED_SQL),
    )

    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("from_status", sa.String(40), nullable=True),
        sa.Column("to_status", sa.String(40), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_audit_log_session_id", "audit_log", ["session_id", "id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sa.Column("cancelled_at", UtcDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_outbox_pending", "outbox", ["delivered_at", "next_attempt_at"])
    op.create_index("ix_outbox_session_id", "outbox", ["session_id"])

    op.create_table(
        "maker_policies",
        sa.Column("maker_id", sa.String(128), primary_key=True),
        sa.Column("max_extension_minutes", sa.Integer, nullable=False),
        sa.Column("makers_may_override", sa.Boolean, nullable=False),
        sa.Column("on_expiry", sa.String(32), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )

    if op.get_bind().dialect.name == "postgresql":
        # The audit log is append-only: the database itself refuses edits and deletions.
        op.execute(
            """
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("maker_policies")
    op.drop_table("outbox")
    op.drop_table("audit_log")
    op.drop_table("payment_sessions")
