"""Stripe webhooks over in-memory fakes: every row of the state table in
`domain/webhook_rules.py` reached through the use cases, rotated-away links, duplicate and late
payments, and bodies that are not Stripe events."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog
from fakes import sign
from structlog.testing import capture_logs
from test_use_cases import ADMIN, World

from payment_window.domain.errors import InvalidWebhook
from payment_window.domain.session import ROTATE_AHEAD, PaymentSession, Status
from payment_window.webhooks import Outcome

COMPLETED = "checkout.session.completed"
SESSION = {
    "id": "cs_test_1",
    "status": "complete",
    "payment_status": "paid",
    "expires_at": 1_900_000_000,
}


def _without(key: str) -> dict[str, Any]:
    return {name: value for name, value in SESSION.items() if name != key}


@pytest.fixture(autouse=True)
def _fresh_log_context() -> None:
    structlog.contextvars.clear_contextvars()


async def _rotated(world: World) -> tuple[PaymentSession, str]:
    """A long window after its first Stripe session was replaced; the old session's id."""
    session = await world.open(minutes=2 * 24 * 60)
    assert session.checkout_expires_at is not None
    world.clock.advance(session.checkout_expires_at - ROTATE_AHEAD - world.clock.now())
    assert (await world.expiry.run_pass()).rotated == 1
    return world.store[session.id], str(session.checkout_session_id)


def _unchanged(world: World) -> tuple[Any, ...]:
    store = world.uow.store
    return (dict(store.sessions), list(store.audit), len(store.outbox), dict(world.index.schedule))


async def _send(world: World, event: dict[str, Any]) -> Outcome:
    payload = json.dumps(event).encode()
    return (await world.webhooks.handle(payload, sign(payload))).outcome


# --- the state table ------------------------------------------------------------------------


async def test_a_delayed_payment_waits_for_confirmation_then_succeeds() -> None:
    world = World()
    session = await world.open()
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay_later(checkout_id)

    assert await world.webhook("evt_1", COMPLETED, checkout_id) is Outcome.APPLIED
    awaiting = world.store[session.id]
    assert awaiting.status is Status.AWAITING_PAYMENT_CONFIRMATION
    assert world.uow.store.actions(session.id)[-1] == "payment_pending"
    assert world.index.schedule[session.id] == awaiting.confirmation_check_at

    world.stripe.pay(checkout_id)
    succeeded = await world.webhook(
        "evt_2", "checkout.session.async_payment_succeeded", checkout_id
    )

    assert succeeded is Outcome.APPLIED
    assert world.store[session.id].status is Status.PAID
    assert session.id not in world.index.schedule
    assert "auction.payment_received" in world.uow.store.events(session.id)


async def test_a_delayed_payment_that_fails_closes_the_window_unpaid() -> None:
    world = World()
    session = await world.open()
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay_later(checkout_id)
    await world.webhook("evt_1", COMPLETED, checkout_id)

    outcome = await world.webhook("evt_2", "checkout.session.async_payment_failed", checkout_id)

    closed = world.store[session.id]
    assert (outcome, closed.status, closed.reason) == (
        Outcome.APPLIED,
        Status.EXPIRED,
        "payment_failed",
    )
    assert "auction.relist_requested" in world.uow.store.events(session.id)


async def test_stripe_expiring_the_current_session_closes_the_window() -> None:
    world = World()
    session = await world.open()
    checkout_id = str(session.checkout_session_id)
    world.stripe.expire_by_itself(checkout_id)

    outcome = await world.webhook("evt_1", "checkout.session.expired", checkout_id)

    closed = world.store[session.id]
    assert (outcome, closed.reason) == (Outcome.APPLIED, "stripe_expired")
    assert world.changes.published[-1].event == "expired"


async def test_an_expiry_event_for_a_paid_window_changes_nothing() -> None:
    world = World()
    session = await world.open()
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay(checkout_id)
    await world.webhook("evt_1", COMPLETED, checkout_id)
    before = _unchanged(world)

    outcome = await world.webhook("evt_2", "checkout.session.expired", checkout_id)

    assert outcome is Outcome.UNCHANGED
    store = world.uow.store
    assert _unchanged(world)[:2] == before[:2] and len(store.outbox) == before[2]
    assert "evt_2" in store.stripe_events  # seen: a redelivery is a duplicate


# --- rotated-away links ---------------------------------------------------------------------


async def test_a_payment_on_the_rotated_away_link_pays_and_closes_the_current_link() -> None:
    world = World()
    window, old = await _rotated(world)
    current = str(window.checkout_session_id)
    world.stripe.pay(old)  # the buyer had the old page open and paid just before the rotation

    outcome = await world.webhook("evt_1", COMPLETED, old)

    assert outcome is Outcome.APPLIED
    paid = world.store[window.id]
    assert (paid.status, paid.checkout_session_id) == (Status.PAID, old)
    # The handler answers before any Stripe call: the current link is handed to the worker...
    assert paid.expire_checkout_id == current
    assert world.stripe.sessions[current].status == "open"
    # ... which expires it, so it cannot take the money a second time.
    assert (await world.expiry.run_pass()).expired_other == 1
    assert world.stripe.sessions[current].status == "expired"
    assert world.store[window.id].expire_checkout_id is None


async def test_a_second_session_paid_for_a_paid_window_alerts_operations() -> None:
    world = World()
    window, old = await _rotated(world)
    current = str(window.checkout_session_id)
    world.stripe.pay(current)
    await world.webhook("evt_1", COMPLETED, current)
    world.stripe.pay(old)  # Stripe's race: the old link took money too
    sessions_before = dict(world.uow.store.sessions)

    with capture_logs() as logs:
        outcome = await world.webhook("evt_2", COMPLETED, old)

    assert outcome is Outcome.UNCHANGED
    assert world.uow.store.sessions == sessions_before
    assert world.uow.store.actions(window.id)[-1] == "duplicate_payment_detected"
    assert "payment.duplicate_detected" in world.uow.store.events(window.id)
    assert world.metrics.counts["payments.window.duplicate_payments"] == 1
    assert "duplicate_payment_detected" in [line["event"] for line in logs]


async def test_a_failed_payment_on_the_rotated_away_link_leaves_the_window_running() -> None:
    world = World()
    window, old = await _rotated(world)
    current = str(window.checkout_session_id)
    world.stripe.pay_later(old)
    world.stripe.payment_fails(old)

    outcome = await world.webhook("evt_1", "checkout.session.async_payment_failed", old)

    # The buyer may still pay on the current link until the deadline.
    still = world.store[window.id]
    assert (outcome, still.status, still.checkout_session_id) == (
        Outcome.UNCHANGED,
        Status.OPEN,
        current,
    )
    assert world.stripe.sessions[current].status == "open"


async def test_a_failed_payment_on_the_old_link_after_the_current_one_paid_awaits_its_event() -> (
    None
):
    world = World()
    window, old = await _rotated(world)
    world.stripe.pay(str(window.checkout_session_id))  # paid; its webhook is still on the way
    world.stripe.pay_later(old)
    world.stripe.payment_fails(old)

    outcome = await world.webhook("evt_1", "checkout.session.async_payment_failed", old)

    # No Stripe call from the handler: the old link's failure leaves the window as it is ...
    assert outcome is Outcome.UNCHANGED
    assert world.store[window.id].status is Status.OPEN
    # ... and the current link's own event records the payment.
    current = str(window.checkout_session_id)
    assert await world.webhook("evt_2", COMPLETED, current) is Outcome.APPLIED
    assert world.store[window.id].status is Status.PAID


# --- late payments --------------------------------------------------------------------------


async def test_a_late_payment_cancels_the_relist_and_tells_operations_and_the_auction() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(session.expires_at - world.clock.now())
    await world.expiry.run_pass()
    assert "auction.relist_requested" in world.uow.store.events(session.id)
    world.stripe.pay(str(session.checkout_session_id))

    with capture_logs() as logs:
        outcome = await world.webhook("evt_1", COMPLETED, str(session.checkout_session_id))

    paid = world.store[session.id]
    assert (outcome, paid.status) == (Outcome.APPLIED, Status.PAID)
    entry = world.uow.store.audit[-1]
    assert (entry.action, entry.from_status) == ("payment_completed", "expired")
    assert entry.details["lateAfterExpiry"] is True
    assert entry.details["followUpsCancelled"] == 1
    events = world.uow.store.events(session.id)
    assert "auction.relist_requested" not in events
    assert {"operations.late_payment_after_expiry", "auction.payment_received"} <= set(events)
    assert "late_payment_after_expiry" in [line["event"] for line in logs]


# --- what is not ours, or not an event ------------------------------------------------------


@pytest.mark.parametrize("event_type", ["payment_intent.succeeded", "checkout.session.created"])
async def test_an_event_of_another_kind_is_acknowledged_and_ignored(event_type: str) -> None:
    world = World()
    await world.open()
    before = _unchanged(world)
    event = {"id": "evt_other", "type": event_type, "data": {"object": {"id": "x"}}}

    assert await _send(world, event) is Outcome.IGNORED
    assert _unchanged(world) == before


@pytest.mark.parametrize(
    "event",
    [
        {"type": COMPLETED, "data": {"object": {"id": "cs_1"}}},
        {"id": "evt_1", "data": {"object": {"id": "cs_1"}}},
        {"id": "evt_1", "type": COMPLETED},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": "cs_1"}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {"status": "complete"}}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {**SESSION, "status": None}}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": _without("payment_status")}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {**SESSION, "status": "paid"}}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {**SESSION, "payment_status": [1]}}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": _without("expires_at")}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {**SESSION, "expires_at": "soon"}}},
        {"id": "evt_1", "type": COMPLETED, "data": {"object": {**SESSION, "expires_at": 10**20}}},
    ],
    ids=[
        "no id",
        "no type",
        "no data",
        "object not an object",
        "session without id",
        "session without status",
        "session without payment_status",
        "status Stripe does not document",
        "payment_status not a string",
        "session without expires_at",
        "expires_at not a number",
        "expires_at out of range",
    ],
)
async def test_a_signed_body_that_is_not_a_stripe_event_is_refused_and_changes_nothing(
    event: dict[str, Any],
) -> None:
    world = World()
    await world.open()
    before = _unchanged(world)
    with pytest.raises(InvalidWebhook):
        await _send(world, event)
    assert _unchanged(world) == before


async def test_an_event_for_a_terminated_window_paid_too_late_is_still_recorded() -> None:
    world = World()
    session = await world.open()
    await world.windows.terminate(session.id, ADMIN)
    world.stripe.pay(str(session.checkout_session_id))
    outcome = await world.webhook("evt_1", COMPLETED, str(session.checkout_session_id))
    assert outcome is Outcome.APPLIED
    assert world.uow.store.audit[-1].details["closedReason"] == "admin_terminated"
