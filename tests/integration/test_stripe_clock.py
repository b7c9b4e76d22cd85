"""Stripe's clock, not ours: learnt from the `Date` of Stripe's answers, `expires_at` planned on it,
and a refused `expires_at` planned again once. The stand-in here runs a clock of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe

from payment_window.adapters.clock import StripeClock, SystemClock
from payment_window.adapters.stripe import StripeGateway
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import CheckoutSessionMissing
from payment_window.service import OpenWindow

MARKETPLACE = Actor(subject="marketplace", role=Role.SERVICE)


def skewed_stripe(seconds: float) -> Iterator[RunningStripe]:
    with RunningStripe(clock=lambda: time.time() + seconds) as server:
        yield server


@pytest.fixture
def stripe_ahead() -> Iterator[RunningStripe]:
    """Stripe's clock 20 minutes ahead of ours and the store's."""
    yield from skewed_stripe(20 * 60)


@pytest.fixture
def stripe_behind() -> Iterator[RunningStripe]:
    """Stripe's clock 40 seconds behind."""
    yield from skewed_stripe(-40)


async def built(settings: Settings, stripe: RunningStripe) -> Container:
    container = await bootstrap(with_stripe(settings, stripe))
    await container.clock.sync()
    return container


@pytest.fixture
async def ahead(pg_settings: Settings, stripe_ahead: RunningStripe) -> AsyncIterator[Container]:
    container = await built(pg_settings, stripe_ahead)
    yield container
    await container.close()


@pytest.fixture
async def behind(pg_settings: Settings, stripe_behind: RunningStripe) -> AsyncIterator[Container]:
    container = await built(pg_settings, stripe_behind)
    yield container
    await container.close()


def auction(number: int, **changes: object) -> OpenWindow:
    return OpenWindow(
        auction_id=f"auc-clock-{number}-{time.monotonic_ns()}",
        maker_id="maker-1",
        buyer_id="buyer-1",
        amount=2_000,
        currency="usd",
        **changes,  # type: ignore[arg-type]
    )


async def test_the_gateway_learns_stripes_clock_from_any_answer(
    stripe_ahead: RunningStripe,
) -> None:
    learnt = StripeClock(SystemClock(offset_seconds=-600))  # and this host is 10 minutes slow
    gateway = StripeGateway(stripe_ahead.api_key, api_base=stripe_ahead.url, stripe_clock=learnt)
    try:
        assert learnt.uncertainty is None
        with pytest.raises(CheckoutSessionMissing):
            await gateway.retrieve("cs_test_nothing")  # a 404 carries Stripe's clock too
    finally:
        await gateway.close()

    assert learnt.uncertainty is not None and learnt.uncertainty <= timedelta(seconds=1)
    assert abs(learnt.offset.total_seconds() - (20 * 60 + 600)) <= 1.5


async def test_stripe_ahead_refuses_the_first_plan_which_is_planned_again_once(
    ahead: Container, stripe_ahead: RunningStripe
) -> None:
    # Before Stripe ever answered, 40 minutes on our clock is only 20 on Stripe's: refused.
    first = await ahead.windows.open(auction(1, window_minutes=40), MARKETPLACE)
    assert stripe_ahead.calls("/v1/checkout/sessions", method="POST") == 2
    # Now its clock is known: planned right the first time.
    second = await ahead.windows.open(auction(2, window_minutes=40), MARKETPLACE)
    assert stripe_ahead.calls("/v1/checkout/sessions", method="POST") == 3

    for opened in (first, second):
        assert opened.checkout_session_id and opened.checkout_expires_at
        at_stripe = stripe_ahead.session(opened.checkout_session_id)
        # The session ends with the window, in real time: 20 minutes later on Stripe's clock.
        assert at_stripe["expires_at"] == int(
            (opened.expires_at + timedelta(minutes=20)).timestamp()
        )
        assert not opened.outlives_checkout()


async def test_stripe_behind_still_gives_a_default_window_its_one_session(
    behind: Container, stripe_behind: RunningStripe
) -> None:
    await behind.windows.open(auction(1, window_minutes=60), MARKETPLACE)  # learns the clock

    day = await behind.windows.open(auction(2), MARKETPLACE)

    assert day.checkout_session_id and day.checkout_expires_at
    assert not day.outlives_checkout()  # no second session needed for its last seconds
    length = day.expires_at - behind.clock.now()
    assert timedelta(hours=23, minutes=59) < length <= timedelta(hours=24)
    assert stripe_behind.calls("/v1/checkout/sessions", method="POST") == 2
