"""Attaching a window to a Checkout Session another integration made, over in-memory fakes:
amount, currency and link come from Stripe, nothing is made there, and what cannot be enforced
is refused before anything is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_use_cases import SERVICE, World

from payment_window.domain.connect import Charge, Connect
from payment_window.domain.errors import (
    CheckoutAlreadyAttached,
    CheckoutNotFound,
    InvalidWindow,
)
from payment_window.domain.ports import CheckoutSession, CheckoutStatus, PaymentStatus
from payment_window.domain.session import Status
from payment_window.service import OpenWindow

ELSEWHERE = "cs_made_elsewhere"


def made_elsewhere(world: World, **changes: object) -> CheckoutSession:
    """A session the marketplace's own Stripe integration made, open for two hours."""
    fields: dict[str, object] = {
        "id": ELSEWHERE,
        "url": f"https://checkout.test/{ELSEWHERE}",
        "status": CheckoutStatus.OPEN,
        "payment_status": PaymentStatus.UNPAID,
        "expires_at": world.clock.now() + timedelta(hours=2),
        "amount_total": 4_200,
        "currency": "EUR",
        **changes,
    }
    checkout = CheckoutSession(**fields)  # type: ignore[arg-type]
    world.stripe.sessions[checkout.id] = checkout
    return checkout


def attach(auction: str = "auc-1", **changes: object) -> OpenWindow:
    fields: dict[str, object] = {
        "auction_id": auction,
        "maker_id": "maker-1",
        "buyer_id": "buyer-1",
        "window_minutes": 60,
        "checkout_session_id": ELSEWHERE,
        **changes,
    }
    return OpenWindow(**fields)  # type: ignore[arg-type]


async def test_an_attached_window_takes_amount_and_link_from_stripe_and_makes_no_session() -> None:
    world = World()
    checkout = made_elsewhere(world)

    session = await world.windows.open(attach(), SERVICE)

    assert (session.amount, session.currency, session.attached) == (4_200, "eur", True)
    assert (session.checkout_session_id, session.checkout_url) == (checkout.id, checkout.url)
    assert session.status is Status.OPEN
    assert session.expires_at == world.clock.now() + timedelta(minutes=60)
    assert world.stripe.keys == []  # nothing made, nothing expired at Stripe
    assert world.store[session.id] == session
    assert world.uow.store.actions(session.id) == ["payment_window_opened"]
    assert world.index.schedule[session.id] == session.expires_at


async def test_a_checkout_session_already_attached_is_refused_for_a_second_auction() -> None:
    world = World()
    made_elsewhere(world)
    first = await world.windows.open(attach("auc-1"), SERVICE)
    before = world.recorded()

    with pytest.raises(CheckoutAlreadyAttached) as refused:
        await world.windows.open(attach("auc-2"), SERVICE)

    assert refused.value.session_id == first.id
    assert world.recorded() == before


async def test_a_checkout_session_stripe_does_not_know_is_not_found() -> None:
    world = World()
    with pytest.raises(CheckoutNotFound):
        await world.windows.open(attach(), SERVICE)
    assert world.uow.store.sessions == {}


async def test_a_checkout_session_without_an_amount_cannot_be_enforced() -> None:
    world = World()
    made_elsewhere(world, amount_total=None)
    with pytest.raises(InvalidWindow, match="no amount"):
        await world.windows.open(attach(), SERVICE)
    assert world.uow.store.sessions == {}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"amount": 500, "currency": "usd"}, "not both"),
        (
            {"connect": Connect("acct_1ABCdef", Charge.DESTINATION, application_fee_amount=100)},
            "set by the integration",
        ),
    ],
)
async def test_what_the_other_integration_decided_may_not_be_given_again(
    changes: dict[str, object], says: str
) -> None:
    world = World()
    made_elsewhere(world)
    with pytest.raises(InvalidWindow, match=says):
        await world.windows.open(attach(**changes), SERVICE)
    assert world.uow.store.sessions == {}


async def test_a_window_needs_an_amount_and_currency_or_a_session_to_attach_to() -> None:
    world = World()
    request = OpenWindow(auction_id="auc-1", maker_id="maker-1", buyer_id="buyer-1")
    with pytest.raises(InvalidWindow, match="checkoutSessionId"):
        await world.windows.open(request, SERVICE)
    assert world.stripe.keys == []
