"""The steps every use case closes or pays a window with, shared by the requests, the expiry
task and the Stripe webhooks, so each change audits, announces and indexes the same way.

Inside a transaction: ask Stripe first (`checkouts.py`), then record the change with its audit
entry and outbox messages (here). After the commit: tell the index and live viewers
(`after_commit.py`). Those last steps never fail the change: what they miss is repaired from the
store (`IndexRepairs`, the expiry task's sweep).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog

from payment_window.after_commit import AfterCommit
from payment_window.checkouts import StripeCheckouts, StripeTime
from payment_window.domain import messages, times
from payment_window.domain.events import AuditEntry
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    ChangeFeed,
    CheckoutGateway,
    CheckoutSession,
    Clock,
    Metrics,
    UnitOfWork,
    WindowIndex,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.domain.status import WindowStatus
from payment_window.index_repairs import IndexRepairs

log = structlog.get_logger(__name__)


class Transitions:
    """Records closes and payments inside the caller's transaction, with their audit entries
    and messages; holds the Stripe steps before (`checkouts`) and the steps after the commit
    (`after_commit`) every change takes."""

    def __init__(
        self,
        *,
        index: WindowIndex,
        gateway: CheckoutGateway,
        clock: Clock,
        metrics: Metrics,
        changes: ChangeFeed,
        repairs: IndexRepairs,
        default_policy: ExtensionPolicy,
        confirmation_recheck: timedelta,
        render: Callable[[WindowStatus], dict[str, Any]],
        stripe_clock: StripeTime | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.default_policy = default_policy
        self.confirmation_recheck = confirmation_recheck
        self.checkouts = StripeCheckouts(gateway, clock, stripe_clock)
        self.after_commit = AfterCommit(
            index=index,
            changes=changes,
            repairs=repairs,
            metrics=metrics,
            clock=clock,
            render=render,
        )

    def close(
        self,
        uow: UnitOfWork,
        session: PaymentSession,
        policy: ExtensionPolicy,
        reason: CloseReason,
        actor: str,
        *,
        note: str | None = None,
    ) -> PaymentSession:
        """The window closed unpaid: its audit entry and messages join the transaction."""
        closed = session.expire(reason, self.clock.now())
        uow.record(
            self.audit(
                closed,
                "payment_expired",
                actor,
                session.status,
                {
                    "reason": reason.value,
                    "note": note,
                    "expiresAt": times.iso(session.expires_at),
                    "checkoutSessionId": session.checkout_session_id,
                },
            ),
            messages.on_close(closed, reason, policy, actor),
        )
        return closed

    def close_missing_checkout(
        self, uow: UnitOfWork, session: PaymentSession, policy: ExtensionPolicy, actor: str
    ) -> PaymentSession:
        """Stripe does not know the window's session, so nobody can pay through it: close the
        window with its own reason and tell operations, who must find out why."""
        closed = self.close(uow, session, policy, CloseReason.CHECKOUT_MISSING, actor)
        uow.record(
            self.audit(
                closed,
                "operations_alerted",
                actor,
                closed.status,
                {"alert": "checkout_missing", "checkoutSessionId": session.checkout_session_id},
            ),
            [messages.on_checkout_missing(closed, session.checkout_session_id)],
        )
        log.error(
            "checkout_session_missing_at_stripe",
            session_id=session.id,
            checkout_session_id=session.checkout_session_id,
        )
        return closed

    def apply_payment(
        self, uow: UnitOfWork, session: PaymentSession, checkout: CheckoutSession, actor: str
    ) -> PaymentSession:
        """Stripe says the buyer completed checkout: record it instead of closing."""
        confirmed = checkout.payment_status.settled
        paid = session.record_payment(
            self.clock.now(),
            confirmed=confirmed,
            checkout_session_id=checkout.id,
            recheck_after=self.confirmation_recheck,
        )
        uow.record(
            self.audit(
                paid,
                "payment_completed" if confirmed else "payment_pending",
                actor,
                session.status,
                {"checkoutSessionId": checkout.id, "paymentStatus": checkout.payment_status},
            ),
            messages.on_payment(paid),
        )
        return paid

    async def late_payment(
        self, uow: UnitOfWork, closed: PaymentSession, checkout: CheckoutSession, actor: str
    ) -> PaymentSession:
        """The buyer paid in the last instant of a window we closed: the payment wins.

        The relist (or maker review) is cancelled if it has not left yet; operations hear of it
        either way, and the auction service gets `auction.payment_received` to undo a relist.
        """
        now = self.clock.now()
        paid = closed.record_late_payment(now, checkout.id)
        cancelled = await uow.cancel_pending(closed.id, messages.FOLLOW_UP_EVENTS, now)
        uow.record(
            self.audit(
                paid,
                "payment_completed",
                actor,
                closed.status,
                {
                    "checkoutSessionId": checkout.id,
                    "paymentStatus": checkout.payment_status,
                    "lateAfterExpiry": True,
                    "closedReason": closed.reason,
                    "followUpsCancelled": cancelled,
                },
            ),
            [
                messages.on_late_payment(paid, closed, checkout.id, cancelled),
                *messages.on_payment(paid),
            ],
        )
        log.warning(
            "late_payment_after_expiry",
            session_id=closed.id,
            closed_reason=closed.reason,
            follow_ups_cancelled=cancelled,
        )
        return paid

    def duplicate_payment(
        self, uow: UnitOfWork, paid: PaymentSession, checkout: CheckoutSession, actor: str
    ) -> None:
        """A second Checkout Session of a paid window took money too: a refund is a person's
        decision, so operations are alerted and the audit log keeps both sessions."""
        first = paid.checkout_session_id
        uow.record(
            self.audit(
                paid,
                "duplicate_payment_detected",
                actor,
                paid.status,
                {
                    "checkoutSessionId": checkout.id,
                    "firstCheckoutSessionId": first,
                    "paymentStatus": checkout.payment_status,
                },
            ),
            [messages.on_duplicate_payment(paid, first, checkout.id)],
        )
        self.metrics.increment("payments.window.duplicate_payments")
        log.error(
            "duplicate_payment_detected",
            session_id=paid.id,
            checkout_session_id=checkout.id,
            first_checkout_session_id=first,
        )

    async def policy_for(self, uow: UnitOfWork, maker_id: str) -> ExtensionPolicy:
        return await uow.policies.get(maker_id) or self.default_policy

    def audit(
        self,
        session: PaymentSession,
        action: str,
        actor: str,
        from_status: Status | None,
        details: dict[str, object],
    ) -> AuditEntry:
        return AuditEntry(
            session_id=session.id,
            action=action,
            actor=actor,
            from_status=from_status.value if from_status else None,
            to_status=session.status.value,
            details={key: value for key, value in details.items() if value is not None},
            at=self.clock.now(),
        )
