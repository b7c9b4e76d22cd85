"""What the operations read model answers: filters, figures and history, as plain values."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from payment_window.domain.buyers import DEFAULT_DAYS, RepeatNonPayer
from payment_window.domain.session import Status

DUE_SOON = timedelta(hours=1)
RECENT = timedelta(hours=24)
AWAITING_TOO_LONG = timedelta(days=1)
DUPLICATES_SHOWN = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class WindowFilter:
    """Which windows to list. Times bound the deadline: `due_after <= expires_at < due_before`.

    `overdue` means open with its deadline already passed; False means no such condition (not
    "only windows that are not overdue").
    """

    status: Status | None = None
    maker_id: str | None = None
    buyer_id: str | None = None
    auction_id: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool = False

    def fingerprint(self) -> str:
        """Ties a cursor to the filters it was made for (not to `now`, which moves)."""
        parts = [
            self.status.value if self.status else "",
            self.maker_id or "",
            self.auction_id or "",
            self.due_before.isoformat() if self.due_before else "",
            self.due_after.isoformat() if self.due_after else "",
            "overdue" if self.overdue else "",
        ]
        # Appended only when set, so cursors handed out before the buyer filter existed stay valid.
        if self.buyer_id is not None:
            parts.append(f"buyer={self.buyer_id}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures at the top of the operations view, at `server_time`."""

    server_time: datetime
    open_count: int
    due_within_hour: int
    overdue_count: int
    oldest_overdue_seconds: int | None
    failing_at_stripe: int
    awaiting_confirmation_over_day: int
    duplicate_payments: int
    undelivered_outbox: int
    expired_last_24h_by_reason: dict[str, int] = field(default_factory=dict)
    # Buyers with the most windows closed unpaid among those opened in the last `buyer_period_days`.
    buyer_period_days: int = DEFAULT_DAYS
    repeat_non_payers: tuple[RepeatNonPayer, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored line of a session's history."""

    id: int
    action: str
    actor: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class FailingMessage:
    """An undelivered outbox message that has failed at least once."""

    id: str
    session_id: str | None
    destination: str
    event_type: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    parked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """An outgoing webhook endpoint as operators see it (`relay --status`, the operations view)."""

    url: str
    destination: str
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    failures: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    backlog: int = 0
    parked: int = 0
