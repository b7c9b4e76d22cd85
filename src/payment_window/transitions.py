"""The steps every use case closes or pays a window with, shared by the requests, the expiry
task and the Stripe webhooks, so each change audits, announces and indexes the same way.

Inside a transaction: ask Stripe first, then record the change with its audit entry and outbox
messages. After the commit: tell the index and live viewers. Those last steps never fail the
change: what they miss is repaired from the store (`IndexRepairs`, the expiry task's sweep).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from payment_window.domain import messages, stripe_calls, window
from payment_window.domain.errors import CheckoutNotOpen, CheckoutRefused
from payment_window.domain.events import AuditEntry
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    ChangeFeed,
    CheckoutGateway,
    CheckoutSession,
    Clock,
    Metrics,
    UnitOfWork,
    WindowChange,
    WindowIndex,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status, closed_event
from payment_window.domain.status import WindowStatus
from payment_window.domain.window import STRIPE_CLOCK_MARGIN
from payment_window.index_repairs import IndexRepairs

log = structlog.get_logger(__name__)

PAID = frozenset({"paid", "no_payment_required"})


class StripeTime(Protocol):
    """Stripe's clock as learnt from its answers."""

    def now(self) -> datetime: ...

    @property
    def uncertainty(self) -> timedelta | None:
        """How far off the learnt clock may be; None before Stripe first answered."""
        ...


class Transitions:
    """Stripe first, record, audit, announce: the building blocks of every state change."""

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
        self.index = index
        self.gateway = gateway
        self.clock = clock
        self.stripe_clock = stripe_clock
        self.metrics = metrics
        self.changes = changes
        self.repairs = repairs
        self.default_policy = default_policy
        self.confirmation_recheck = confirmation_recheck
        # How live viewers are shown a status (the API's body), so they see what a read shows.
        self.render = render

    # --- Stripe's clock ---------------------------------------------------------------------------

    def _stripe_view(self) -> tuple[timedelta, timedelta]:
        """Stripe's clock minus ours (whole seconds), and the margin planning needs."""
        learnt = self.stripe_clock
        uncertainty = learnt.uncertainty if learnt is not None else None
        if learnt is None or uncertainty is None:
            # Before Stripe first answered: its clock is taken to be the deciding one (a server's,
            # not this host's); a refusal teaches the offset and is planned again once.
            return timedelta(0), STRIPE_CLOCK_MARGIN
        skew = timedelta(seconds=round((learnt.now() - self.clock.now()).total_seconds()))
        margin = STRIPE_CLOCK_MARGIN + timedelta(seconds=math.ceil(uncertainty.total_seconds()))
        return skew, margin

    def plan_window_end(self, ends: datetime, now: datetime) -> datetime:
        """A new window's deadline: one that lasts about as long as a Stripe session ends
        with its one session (judged on Stripe's clock)."""
        skew, margin = self._stripe_view()
        return window.fit_to_one_checkout(ends + skew, now + skew, margin) - skew

    def checkout_expiry(self, window_ends: datetime) -> tuple[datetime, timedelta]:
        """The `expires_at` (Stripe's clock) of a Checkout Session for a window ending at
        `window_ends` (ours): the same moment, within Stripe's range; and the skew used."""
        skew, margin = self._stripe_view()
        return window.stripe_session_expiry(
            window_ends + skew, self.clock.now() + skew, margin
        ), skew

    async def create_checkout(
        self, session: PaymentSession, window_ends: datetime, idempotency_key: str
    ) -> CheckoutSession:
        """A Checkout Session for the window, its `expires_at` given back on our clock. When
        Stripe refuses the `expires_at` (our idea of its clock was off), its answer taught us
        its clock: planned again and asked once more."""
        expires_at, skew = self.checkout_expiry(window_ends)
        try:
            created = await self.gateway.create(
                session, expires_at, idempotency_key=idempotency_key
            )
        except CheckoutRefused as refused:
            again, skew = self.checkout_expiry(window_ends)
            if refused.param != "expires_at" or again == expires_at:
                raise
            log.warning(
                "checkout_expiry_replanned",
                session_id=session.id,
                refused=messages.iso(expires_at),
                planned=messages.iso(again),
            )
            created = await self.gateway.create(
                session, again, idempotency_key=f"{idempotency_key}:replanned"
            )
        # Compared with the window's deadline and our clock from now on: on our clock.
        return replace(created, expires_at=created.expires_at - skew)

    # --- inside the transaction -----------------------------------------------------------------

    async def expire_at_stripe(self, session: PaymentSession) -> CheckoutSession | None:
        """Stripe first: None once Stripe can no longer take the money for this window, or the
        completed Checkout Session when the buyer paid before Stripe could expire it.

        Raises CheckoutSessionMissing when Stripe does not know the session at all."""
        if not session.checkout_session_id:
            return None
        try:
            await self.gateway.expire(
                session.checkout_session_id,
                idempotency_key=f"expire:{session.checkout_session_id}:{session.stripe_attempt_key}",
                account=session.stripe_account,
            )
        except CheckoutNotOpen as refused:
            if refused.status == "complete":
                return await self.gateway.retrieve(
                    session.checkout_session_id, account=session.stripe_account
                )
            # Already expired at Stripe (by us before a crash, or by Stripe itself): carry on.
        return None

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
                    "expiresAt": messages.iso(session.expires_at),
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
        confirmed = checkout.payment_status in PAID
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

    # --- after the commit -----------------------------------------------------------------------

    async def announce_closed(self, session: PaymentSession, *, reindex: bool = True) -> None:
        """Metrics, index and live viewers for a committed close or payment."""
        if session.status is Status.EXPIRED:
            self.metrics.increment(
                "payments.window.expired_count", tags=[f"reason:{session.reason}"]
            )
            if session.reason == CloseReason.WINDOW_ELAPSED and session.expired_at:
                lateness = (session.expired_at - session.expires_at).total_seconds()
                self.metrics.distribution("payments.window.expiry_lateness", max(0.0, lateness))
            await self.announce(session, closed_event(session.reason), reindex=reindex)
        else:
            await self.announce(session, session.status.value, reindex=reindex)
        log.info(
            "payment_window_closed",
            session_id=session.id,
            status=session.status.value,
            reason=session.reason,
        )

    async def announce(self, session: PaymentSession, event: str, *, reindex: bool = True) -> None:
        """Tell the index (unless the caller settles it itself) and live viewers of a committed
        change. Never raises: the change is stored, and what fails here is repaired."""
        wake = event in ("opened", "extended", "rotated")
        if reindex:
            try:
                await self.index.put(session)
                if wake:
                    await self.index.wake()
            except Exception as error:
                self.after_commit_failed("index", session.id, error)
                self.repairs.add(session.id, wake=wake)
        try:
            await self.changes.publish(
                WindowChange(
                    session.id, event, self.render(WindowStatus.of(session, self.clock.now()))
                )
            )
        except Exception as error:
            self.after_commit_failed("live_events", session.id, error)

    async def wake_workers(self, session: PaymentSession) -> None:
        """Tell sleeping workers a committed change left them Stripe work to do now."""
        try:
            await self.index.wake()
        except Exception as error:
            self.after_commit_failed("index", session.id, error)
            self.repairs.add(session.id, wake=True)

    def after_commit_failed(self, step: str, session_id: str, error: Exception) -> None:
        self.metrics.increment("payments.window.after_commit_failures", tags=[f"step:{step}"])
        log.warning("after_commit_step_failed", step=step, session_id=session_id, error=repr(error))

    async def expire_quietly(
        self, checkout_session_id: str, idempotency_key: str, *, account: str | None = None
    ) -> None:
        """Expire a session nobody should pay through any more (rotated away, unused): a
        background call."""
        try:
            with stripe_calls.background():
                await self.gateway.expire(
                    checkout_session_id, idempotency_key=idempotency_key, account=account
                )
        except CheckoutNotOpen:
            pass
        except Exception:
            # Best effort: Stripe ends the session by itself at its own expires_at anyway.
            log.warning(
                "checkout_expire_failed", checkout_session_id=checkout_session_id, exc_info=True
            )
