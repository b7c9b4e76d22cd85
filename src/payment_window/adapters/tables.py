"""The store's tables (SQLAlchemy Core); migrations create them, queries use them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend; SQLite would otherwise hand back naive times."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UNSETTLED_SQL = "status IN ('open', 'awaiting_payment_confirmation')"
UNPAID_SQL = "status = 'expired'"
OUTBOX_PENDING_SQL = "delivered_at IS NULL AND cancelled_at IS NULL"

metadata = MetaData()

payment_sessions = Table(
    "payment_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("auction_id", String(128), nullable=False),
    Column("maker_id", String(128), nullable=False),
    Column("buyer_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("checkout_session_id", String(255), nullable=True, unique=True),
    Column("checkout_url", Text, nullable=True),
    Column("checkout_expires_at", UtcDateTime, nullable=True),
    Column("status", String(40), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("expired_at", UtcDateTime, nullable=True),
    Column("paid_at", UtcDateTime, nullable=True),
    Column("extended_minutes", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False),
    Column("expiry_attempts", Integer, nullable=False, default=0),
    Column("last_expiry_error", Text, nullable=True),
    Column("reminders_sent", JSON, nullable=False, default=list),
    Column("next_reminder_at", UtcDateTime, nullable=True),
    Column("confirmation_check_at", UtcDateTime, nullable=True),
    # Stripe Connect (migration 0007): the maker's account and how the payment reaches it.
    Column("connect_account_id", String(255), nullable=True),
    Column("connect_charge", String(16), nullable=True),
    Column("application_fee_amount", BigInteger, nullable=True),
    Column("on_behalf_of", Boolean, nullable=False, default=False, server_default=false()),
    Column("attached", Boolean, nullable=False, default=False, server_default=false()),
    Column("expire_checkout_id", String(255), nullable=True),
    # The SQL window index: when the row is next due for the expiry task, and whose claim holds it.
    Column("due_at", UtcDateTime, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_payment_sessions_due_at", "due_at"),
    Index("ix_payment_sessions_status_expires_at", "status", "expires_at"),
    Index("ix_payment_sessions_maker_id", "maker_id"),
    Index("ix_payment_sessions_auction_id", "auction_id"),
    # A buyer's payment record: that buyer's windows opened since a moment.
    Index("ix_payment_sessions_buyer_id_created_at", "buyer_id", "created_at"),
    # Repeat non-payers: closed-unpaid windows opened since a moment, grouped by buyer, read
    # from the index alone (paid and open rows, the bulk of a healthy store, are not in it).
    Index(
        "ix_payment_sessions_unpaid_created_at_buyer_id",
        "created_at",
        "buyer_id",
        postgresql_where=text(UNPAID_SQL),
        sqlite_where=text(UNPAID_SQL),
    ),
    # The summary's "closed unpaid in the last 24 hours": by when they closed, which no other
    # index bounds (a window terminated early, or closed days late, is far from its deadline).
    Index(
        "ix_payment_sessions_unpaid_expired_at",
        "expired_at",
        postgresql_where=text(UNPAID_SQL),
        sqlite_where=text(UNPAID_SQL),
    ),
    # One unsettled window per auction, even when two requests race past the service's check.
    Index(
        "ux_payment_sessions_unsettled_auction",
        "auction_id",
        unique=True,
        postgresql_where=text(UNSETTLED_SQL),
        sqlite_where=text(UNSETTLED_SQL),
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("from_status", String(40), nullable=True),
    Column("to_status", String(40), nullable=True),
    Column("details", JSON, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_audit_log_session_id", "session_id", "id"),
    # The operations summary counts alerts (duplicate payments) by action over a period.
    Index("ix_audit_log_action_at", "action", "at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("session_id", String(64), nullable=True),
    Column("destination", String(32), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("cancelled_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    # A webhook message that kept failing for three days: not claimed until redelivered.
    Column("parked_at", UtcDateTime, nullable=True),
    Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
    Index("ix_outbox_session_id", "session_id"),
    # The relay's claim reads due, undelivered rows only, whatever the size of the table.
    Index(
        "ix_outbox_due",
        "destination",
        "next_attempt_at",
        postgresql_where=text(OUTBOX_PENDING_SQL),
        sqlite_where=text(OUTBOX_PENDING_SQL),
    ),
    # Retention (`prune`) finds cancelled rows by when they were cancelled.
    Index(
        "ix_outbox_cancelled_at",
        "cancelled_at",
        postgresql_where=text("cancelled_at IS NOT NULL"),
        sqlite_where=text("cancelled_at IS NOT NULL"),
    ),
)

maker_policies = Table(
    "maker_policies",
    metadata,
    Column("maker_id", String(128), primary_key=True),
    Column("max_extension_minutes", Integer, nullable=False),
    Column("makers_may_override", Boolean, nullable=False),
    Column("on_expiry", String(32), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Every change of a maker's policy: who made it, the policy before (none: the defaults applied)
# and after. Append-only, kept like the audit log.
maker_policy_audit = Table(
    "maker_policy_audit",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("maker_id", String(128), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_maker_policy_audit_maker_id", "maker_id", "id"),
)

# Every Stripe Checkout Session a window ever had (rotation replaces the current one), so a
# webhook about an old session still finds its window. Written with the session row.
checkout_sessions = Table(
    "checkout_sessions",
    metadata,
    Column("checkout_session_id", String(255), primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The connected account the session lives on (direct charges); NULL: the platform's.
    Column("stripe_account", String(255), nullable=True),
    Index("ix_checkout_sessions_session_id", "session_id"),
)

# Stripe events already acted on: Stripe delivers at least once, so an id seen before is a
# redelivery. Inserted in the transaction of the change the event made.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    # Retention (`prune`): ids older than PW_WEBHOOK_EVENT_RETENTION_DAYS go.
    Index("ix_stripe_events_received_at", "received_at"),
)

# The first answer to each Idempotency-Key (per token subject), replayed for 24 hours.
# `status_code` stays NULL while the first request is still being worked on.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("response_headers", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# Each outgoing webhook endpoint's state, keyed by its outbox destination (`webhook:…`): what
# `relay --status` and the operations view show, and whether a 410 has disabled it.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("destination", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_failure_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_reason", Text, nullable=True),
)
