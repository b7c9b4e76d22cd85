"""A buyer's payment record: how many windows they were given, paid, and let close unpaid.

Marketplaces chase repeat non-payers (eBay's unpaid-item process); this is the record they
chase them by. A window counts in a period when it was *opened* within it, so a window opened
89 days ago and closed yesterday is in the last 90 days, and every window is counted in one
period however long it ran. Closed unpaid means `expired`, whatever ended it (the deadline, a
person, Stripe); a window paid after it closed (`paid_after_close`) counts as paid: the buyer
paid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from payment_window.domain.errors import DomainError
from payment_window.domain.session import CloseReason, Status

DEFAULT_DAYS = 90
MIN_DAYS = 1
# Ten years: far beyond any store's retention, and small enough that `now - days` stays a date.
MAX_DAYS = 3650
REPEAT_NON_PAYERS_SHOWN = 10
# A close recorded without a reason (rows from before reasons were kept) is still a close.
UNKNOWN_REASON = "unknown"


class InvalidPeriod(DomainError):
    code = "invalid_period"

    def __init__(self, days: int) -> None:
        super().__init__(f"days must be a whole number from {MIN_DAYS} to {MAX_DAYS}, not {days}")
        self.days = days


@dataclass(frozen=True, slots=True)
class Period:
    """The last `days` days up to `until`: windows opened at or after `since` are in it."""

    days: int
    since: datetime
    until: datetime

    @classmethod
    def last(cls, days: int, now: datetime) -> Period:
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise InvalidPeriod(days)
        return cls(days=days, since=now - timedelta(days=days), until=now)


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many of a buyer's windows in a period ended up in `status` for `reason`."""

    status: Status
    reason: str | None
    count: int


@dataclass(frozen=True, slots=True)
class UnpaidWindow:
    """A window the buyer let close: which, for which auction, when and why."""

    session_id: str
    auction_id: str
    closed_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class BuyerRecord:
    """One buyer's windows opened in `period`, by how they ended."""

    buyer_id: str
    period: Period
    opened: int
    paid: int
    # Open, or complete at Stripe with the money still on its way: no outcome yet.
    unsettled: int
    unpaid_by_reason: dict[str, int] = field(default_factory=dict)
    last_unpaid: UnpaidWindow | None = None

    @property
    def unpaid(self) -> int:
        return sum(self.unpaid_by_reason.values())

    @classmethod
    def of(
        cls,
        buyer_id: str,
        period: Period,
        outcomes: Iterable[OutcomeCount],
        last_unpaid: UnpaidWindow | None,
    ) -> BuyerRecord:
        """Fold the store's counts by (status, reason) into the record. Every close reason the
        domain knows is listed, with zero where the buyer has none, so readers compare like
        with like."""
        by_reason = {reason.value: 0 for reason in CloseReason}
        paid = unsettled = 0
        for outcome in outcomes:
            if outcome.status is Status.PAID:
                paid += outcome.count
            elif outcome.status is Status.EXPIRED:
                key = outcome.reason or UNKNOWN_REASON
                by_reason[key] = by_reason.get(key, 0) + outcome.count
            else:
                unsettled += outcome.count
        return cls(
            buyer_id=buyer_id,
            period=period,
            opened=paid + unsettled + sum(by_reason.values()),
            paid=paid,
            unsettled=unsettled,
            unpaid_by_reason=by_reason,
            last_unpaid=last_unpaid,
        )


@dataclass(frozen=True, slots=True)
class RepeatNonPayer:
    """A buyer among those with the most windows closed unpaid in a period."""

    buyer_id: str
    unpaid: int
    opened: int
