"""Checkout Sessions on Stripe's clock: planned from the clock learnt from Stripe's answers,
planned again once when Stripe refuses the `expires_at`, and expired quietly (best effort) when
nobody should pay through them any more. Windows come from the use cases over the fakes (an
hour long, so Stripe's 30-minute minimum does not move their sessions' `expires_at`)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fakes import FakeClock, FakeStripe
from structlog.testing import capture_logs
from test_use_cases import World

from payment_window.checkouts import StripeCheckouts
from payment_window.domain.errors import CheckoutRefused
from payment_window.domain.ports import CheckoutSession
from payment_window.domain.session import PaymentSession

STRIPE_AHEAD = timedelta(seconds=30)


class LearntClock:
    """Stripe's clock as the gateway learns it: `offset` ahead of ours, `uncertainty` wide
    once Stripe has answered (None before)."""

    def __init__(self, clock: FakeClock, offset: timedelta, uncertainty: timedelta | None):
        self._clock = clock
        self.offset = offset
        self.uncertainty = uncertainty

    def now(self) -> datetime:
        return self._clock.now() + self.offset


class RefusingStripe(FakeStripe):
    """Refuses the first create for `param`; a refused `expires_at` teaches `learnt` that
    Stripe is ahead, as the real gateway learns from the refusal's Date header."""

    def __init__(self, clock: FakeClock, learnt: LearntClock, param: str) -> None:
        super().__init__(clock)
        self._learnt = learnt
        self._param = param
        self.refused = 0

    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        if not self.refused:
            self.refused += 1
            self._learnt.offset, self._learnt.uncertainty = STRIPE_AHEAD, timedelta(seconds=1)
            raise CheckoutRefused("parameter_invalid_integer", "refused", param=self._param)
        return await super().create(session, expires_at, idempotency_key)


async def test_a_session_is_planned_on_stripes_clock_and_given_back_on_ours() -> None:
    world = World()
    window = await world.open(minutes=60)
    learnt = LearntClock(world.clock, STRIPE_AHEAD, timedelta(seconds=1))
    checkouts = StripeCheckouts(world.stripe, world.clock, learnt)

    created = await checkouts.create(window, window.expires_at, "k-1")

    sent = world.stripe.sessions[created.id].expires_at
    assert sent - created.expires_at == STRIPE_AHEAD
    assert created.expires_at == window.expires_at


async def test_a_refused_expiry_is_planned_again_once_with_a_key_of_its_own() -> None:
    world = World()
    window = await world.open(minutes=60)
    learnt = LearntClock(world.clock, timedelta(0), None)
    stripe = RefusingStripe(world.clock, learnt, param="expires_at")
    checkouts = StripeCheckouts(stripe, world.clock, learnt)

    with capture_logs() as logs:
        created = await checkouts.create(window, window.expires_at, "k-1")

    assert stripe.keys == ["k-1:replanned"]
    assert stripe.sessions[created.id].expires_at == window.expires_at + STRIPE_AHEAD
    assert [line["event"] for line in logs] == ["checkout_expiry_replanned"]


async def test_a_refusal_of_anything_else_is_not_planned_again() -> None:
    world = World()
    window = await world.open(minutes=30)
    learnt = LearntClock(world.clock, timedelta(0), None)
    stripe = RefusingStripe(world.clock, learnt, param="amount")
    checkouts = StripeCheckouts(stripe, world.clock, learnt)

    with pytest.raises(CheckoutRefused):
        await checkouts.create(window, window.expires_at, "k-1")
    assert stripe.keys == []


async def test_a_failed_quiet_expiry_is_logged_not_raised() -> None:
    world = World()
    window = await world.open(minutes=30)
    checkout_id = str(window.checkout_session_id)
    checkouts = StripeCheckouts(world.stripe, world.clock)
    world.stripe.fail_next_expire()

    with capture_logs() as logs:
        await checkouts.expire_quietly(checkout_id, "quiet-1")

    assert [line["event"] for line in logs] == ["checkout_expire_failed"]
    assert world.stripe.sessions[checkout_id].status == "open"
