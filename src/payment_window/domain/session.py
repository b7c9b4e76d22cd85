"""The payment session, its statuses and the only transitions it may make."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from payment_window.domain import window
from payment_window.domain.connect import Charge, Connect
from payment_window.domain.errors import (
    ExtensionExceedsPolicy,
    InvalidTransition,
    InvalidWindow,
    WindowElapsed,
    WindowNotOpen,
    WindowOutlivesCheckout,
)
from payment_window.domain.policy import ExtensionPolicy


class Status(StrEnum):
    OPEN = "open"
    AWAITING_PAYMENT_CONFIRMATION = "awaiting_payment_confirmation"
    PAID = "paid"
    EXPIRED = "expired"


class CloseReason(StrEnum):
    """Why a window closed as it did: left `open` without being paid, or paid only after we
    had closed it."""

    WINDOW_ELAPSED = "window_elapsed"
    ADMIN_TERMINATED = "admin_terminated"
    MAKER_TERMINATED = "maker_terminated"
    STRIPE_EXPIRED = "stripe_expired"
    PAYMENT_FAILED = "payment_failed"
    # Stripe does not know the window's Checkout Session: nobody can pay through it.
    CHECKOUT_MISSING = "checkout_missing"
    # Stripe took the money after we had closed the window (the window is `paid`).
    PAID_AFTER_CLOSE = "paid_after_close"


TERMINATED_REASONS = frozenset({CloseReason.ADMIN_TERMINATED, CloseReason.MAKER_TERMINATED})
PAID_AFTER_CLOSE = CloseReason.PAID_AFTER_CLOSE


def close_reason(stored: str | None) -> CloseReason | None:
    """The reason a stored window (row or index entry) carries; ValueError for one this
    version does not know."""
    return None if stored is None else CloseReason(stored)


def closed_event(reason: CloseReason | None) -> str:
    """What viewers and the audit call a close: a person ended it, or it ran out."""
    return "terminated" if reason in TERMINATED_REASONS else "expired"


ALLOWED_TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.PAID, Status.EXPIRED, Status.AWAITING_PAYMENT_CONFIRMATION}),
    Status.AWAITING_PAYMENT_CONFIRMATION: frozenset({Status.PAID, Status.EXPIRED}),
    Status.PAID: frozenset(),
    Status.EXPIRED: frozenset(),
}
FINAL_STATUSES = frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if not targets)
MAX_EXTENSION_MINUTES_PER_REQUEST = 7 * 24 * 60
# A Stripe session is replaced this long before it runs out, so the buyer never meets a dead link.
ROTATE_AHEAD = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class PaymentSession:
    """A buyer's window to pay for an auction they won. Immutable: changes return a new one."""

    id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    status: Status = Status.OPEN
    reason: CloseReason | None = None
    checkout_session_id: str | None = None
    checkout_url: str | None = None
    checkout_expires_at: datetime | None = None
    expired_at: datetime | None = None
    paid_at: datetime | None = None
    extended_minutes: int = 0
    version: int = 1
    expiry_attempts: int = 0
    last_expiry_error: str | None = None
    reminders_sent: tuple[int, ...] = ()
    next_reminder_at: datetime | None = None
    # Awaiting confirmation: when to ask Stripe again, should its follow-up webhook not come.
    confirmation_check_at: datetime | None = None
    # Stripe Connect: the maker's connected account and the charge type (None: the platform's).
    connect_account_id: str | None = None
    connect_charge: str | None = None
    application_fee_amount: int | None = None
    on_behalf_of: bool = False
    # The Checkout Session was made by another integration (attach): never remade by us.
    attached: bool = False
    # Another Checkout Session of this (paid) window the expiry task must still expire at
    # Stripe: the webhook handler answers first and leaves the Stripe call to the worker.
    expire_checkout_id: str | None = None

    @property
    def session_id(self) -> str:
        return self.id

    @property
    def connect(self) -> Connect | None:
        if self.connect_account_id is None or self.connect_charge is None:
            return None
        return Connect(
            self.connect_account_id,
            Charge(self.connect_charge),
            self.application_fee_amount,
            self.on_behalf_of,
        )

    @property
    def stripe_account(self) -> str | None:
        """The account every Stripe call about this window's sessions must name (direct
        charges); None for the platform's own sessions."""
        return self.connect_account_id if self.connect_charge == Charge.DIRECT.value else None

    def with_connect(self, connect: Connect | None) -> PaymentSession:
        if connect is None:
            return self
        return replace(
            self,
            connect_account_id=connect.account_id,
            connect_charge=connect.charge.value,
            application_fee_amount=connect.application_fee_amount,
            on_behalf_of=connect.on_behalf_of,
        )

    @property
    def is_open(self) -> bool:
        return self.status is Status.OPEN

    @property
    def is_scheduled(self) -> bool:
        """The expiry task has something to do for it at `due_at`."""
        return (
            self.is_open
            or self.confirmation_check_due_at is not None
            or self.expire_checkout_id is not None
        )

    @property
    def confirmation_check_due_at(self) -> datetime | None:
        if self.status is Status.AWAITING_PAYMENT_CONFIRMATION:
            return self.confirmation_check_at
        return None

    def confirmation_check_due(self, now: datetime) -> bool:
        due = self.confirmation_check_due_at
        return due is not None and due <= now

    @property
    def stripe_attempt_key(self) -> str:
        """Part of every Stripe idempotency key for this window: Stripe replays a saved answer
        (a 500 included) for a reused key, so each attempt after a failed one needs a new key."""
        return f"{self.id}:a{self.expiry_attempts}"

    def remaining_seconds(self, now: datetime) -> int:
        """Seconds the buyer still has; 0 once the window no longer runs."""
        if not self.is_open:
            return 0
        return window.remaining_seconds(self.expires_at, now)

    def is_due(self, now: datetime) -> bool:
        """Open and past its deadline: the expiry task may close it."""
        return self.is_open and self.expires_at <= now

    @property
    def due_at(self) -> datetime:
        """When the expiry task must next look at this window: its deadline; earlier for a
        reminder, or when the window outlives its Stripe session (Stripe caps one at 24 hours)
        and the session must be replaced before it runs out. A window awaiting confirmation is
        due when Stripe is next asked about it."""
        if self.expire_checkout_id is not None:
            # Handed over by a webhook: the other session must stop taking money at once.
            return self.updated_at
        check = self.confirmation_check_due_at
        if check is not None:
            return check
        moments = [self.expires_at]
        if self.checkout_expires_at is not None and self.outlives_checkout():
            moments.append(self.checkout_expires_at - ROTATE_AHEAD)
        if self.next_reminder_at is not None:
            moments.append(self.next_reminder_at)
        return min(moments)

    def with_reminders_planned(self, offsets_minutes: Sequence[int]) -> PaymentSession:
        """Plan the next buyer reminder: the earliest offset not yet sent that still falls
        inside the window. An offset already sent is never sent again, even after an extension
        moves its moment later."""
        upcoming = [
            moment
            for offset in offsets_minutes
            if offset not in self.reminders_sent
            and (moment := self.expires_at - timedelta(minutes=offset)) > self.created_at
        ]
        return replace(self, next_reminder_at=min(upcoming) if upcoming and self.is_open else None)

    def reminder_due(self, now: datetime) -> bool:
        return self.is_open and self.next_reminder_at is not None and self.next_reminder_at <= now

    def send_reminder(
        self, offsets_minutes: Sequence[int], now: datetime
    ) -> tuple[PaymentSession, int]:
        """Mark the reminder due now as sent; when several came due together (a worker was
        down), only the nearest to the deadline is sent and the earlier ones are dropped."""
        passed = [
            offset
            for offset in offsets_minutes
            if offset not in self.reminders_sent
            and self.expires_at - timedelta(minutes=offset) <= now
        ]
        offset = min(passed)
        sent = replace(self, reminders_sent=tuple(sorted({*self.reminders_sent, *passed})))
        return sent.with_reminders_planned(offsets_minutes), offset

    def needs_new_checkout(self, now: datetime) -> bool:
        """Open, not yet due, and its Stripe session is about to run out before the window."""
        return (
            self.is_open
            and not self.is_due(now)
            and self.checkout_expires_at is not None
            and self.outlives_checkout()
            and now >= self.checkout_expires_at - ROTATE_AHEAD
        )

    def outlives_checkout(self) -> bool:
        """The window now ends after Stripe's session does, so a new session is needed."""
        return self.checkout_expires_at is not None and self.expires_at > self.checkout_expires_at

    def extend(self, minutes: int, policy: ExtensionPolicy, now: datetime) -> PaymentSession:
        """Move the deadline later, within the maker's total-extension policy. Once the
        deadline has passed the window can no longer be extended, closed yet or not."""
        self._require_open()
        if self.is_due(now):
            raise WindowElapsed(self.id)
        if minutes < 1 or minutes > MAX_EXTENSION_MINUTES_PER_REQUEST:
            raise InvalidWindow("minutes must be a whole number from 1 to 10080")
        still_allowed = policy.minutes_still_allowed(self.extended_minutes)
        if minutes > still_allowed:
            raise ExtensionExceedsPolicy(minutes, still_allowed)
        ends = self.expires_at + timedelta(minutes=minutes)
        latest = self.checkout_expires_at
        if self.attached and latest is not None and ends > latest:
            raise WindowOutlivesCheckout(
                self.checkout_session_id or "", latest.isoformat().replace("+00:00", "Z")
            )
        return replace(
            self,
            expires_at=self.expires_at + timedelta(minutes=minutes),
            extended_minutes=self.extended_minutes + minutes,
            version=self.version + 1,
            updated_at=now,
        )

    def expire(self, reason: CloseReason, now: datetime) -> PaymentSession:
        """Close the window unpaid."""
        moved = self._move_to(Status.EXPIRED, now)
        return replace(moved, reason=reason, expired_at=now, confirmation_check_at=None)

    def record_payment(
        self,
        now: datetime,
        *,
        confirmed: bool,
        checkout_session_id: str | None = None,
        recheck_after: timedelta | None = None,
    ) -> PaymentSession:
        """Stripe says the buyer completed checkout on `checkout_session_id` (which the window
        then names, so a payment on any other of its sessions is seen as a second one);
        `confirmed` when the money is in, else Stripe is asked again after `recheck_after`
        should its follow-up webhook not come."""
        paid_with = checkout_session_id or self.checkout_session_id
        if not confirmed:
            awaiting = self._move_to(Status.AWAITING_PAYMENT_CONFIRMATION, now)
            check_at = now + recheck_after if recheck_after is not None else None
            return replace(awaiting, confirmation_check_at=check_at, checkout_session_id=paid_with)
        paid = self._move_to(Status.PAID, now)
        return replace(paid, paid_at=now, confirmation_check_at=None, checkout_session_id=paid_with)

    def expire_other_checkout(self, checkout_session_id: str, now: datetime) -> PaymentSession:
        """Leave the expiry of another session of this window to the expiry task."""
        return replace(self, expire_checkout_id=checkout_session_id, updated_at=now)

    def still_awaiting(self, now: datetime, recheck_after: timedelta) -> PaymentSession:
        """Stripe is still confirming the payment: ask again later (bookkeeping, no version)."""
        return replace(self, confirmation_check_at=now + recheck_after)

    def record_late_payment(
        self, now: datetime, checkout_session_id: str | None = None
    ) -> PaymentSession:
        """A payment Stripe took for a window we had already closed: the buyer's money wins.

        The one exception to final statuses: `expired` is only ever recorded after Stripe refused
        to expire the session, so this happens only if Stripe completed it concurrently.
        """
        if self.status is not Status.EXPIRED:
            return self.record_payment(now, confirmed=True, checkout_session_id=checkout_session_id)
        return replace(
            self,
            status=Status.PAID,
            checkout_session_id=checkout_session_id or self.checkout_session_id,
            reason=PAID_AFTER_CLOSE,
            paid_at=now,
            version=self.version + 1,
            updated_at=now,
        )

    def with_checkout(
        self,
        checkout_session_id: str,
        checkout_url: str,
        checkout_expires_at: datetime,
        now: datetime,
    ) -> PaymentSession:
        """Attach a (new) Stripe Checkout Session to the window."""
        self._require_open()
        return replace(
            self,
            checkout_session_id=checkout_session_id,
            checkout_url=checkout_url,
            checkout_expires_at=checkout_expires_at,
            version=self.version + 1,
            updated_at=now,
        )

    def _require_open(self) -> None:
        if not self.is_open:
            raise WindowNotOpen(self.id, self.status.value)

    def _move_to(self, target: Status, now: datetime) -> PaymentSession:
        if target not in ALLOWED_TRANSITIONS[self.status]:
            if self.status is not Status.OPEN and target is Status.EXPIRED:
                raise WindowNotOpen(self.id, self.status.value)
            raise InvalidTransition(self.status.value, target.value)
        return replace(self, status=target, version=self.version + 1, updated_at=now)
