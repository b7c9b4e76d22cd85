"""Stripe Checkout Sessions as the window's steps need them: made with an `expires_at` planned
on Stripe's clock (learnt from its answers), expired first when a window closes, and expired
quietly when nobody should pay through them any more."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from payment_window.domain import stripe_calls, times, window
from payment_window.domain.errors import CheckoutNotOpen, CheckoutRefused
from payment_window.domain.ports import CheckoutGateway, CheckoutSession, CheckoutStatus, Clock
from payment_window.domain.session import PaymentSession
from payment_window.domain.window import STRIPE_CLOCK_MARGIN

log = structlog.get_logger(__name__)


class StripeTime(Protocol):
    """Stripe's clock as learnt from its answers."""

    def now(self) -> datetime: ...

    @property
    def uncertainty(self) -> timedelta | None:
        """How far off the learnt clock may be; None before Stripe first answered."""
        ...


class StripeCheckouts:
    """Makes and expires the Checkout Sessions of windows, on Stripe's clock."""

    def __init__(
        self, gateway: CheckoutGateway, clock: Clock, stripe_clock: StripeTime | None = None
    ) -> None:
        self.gateway = gateway
        self.clock = clock
        self.stripe_clock = stripe_clock

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

    async def create(
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
                refused=times.iso(expires_at),
                planned=times.iso(again),
            )
            created = await self.gateway.create(
                session, again, idempotency_key=f"{idempotency_key}:replanned"
            )
        # Compared with the window's deadline and our clock from now on: on our clock.
        return replace(created, expires_at=created.expires_at - skew)

    async def expire_at_stripe(self, session: PaymentSession) -> CheckoutSession | None:
        """Asked first when a window closes: None once Stripe can no longer take the money for
        this window, or the completed Checkout Session when the buyer paid before Stripe could
        expire it.

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
            if refused.status == CheckoutStatus.COMPLETE:
                return await self.gateway.retrieve(
                    session.checkout_session_id, account=session.stripe_account
                )
            # Already expired at Stripe (by us before a crash, or by Stripe itself): carry on.
        return None

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
