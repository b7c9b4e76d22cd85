"""The expiry pass over in-memory fakes: rotation, the confirmation re-check, the sweep, groups,
busy rows, a stopping worker, and store and index faults. Every window gets where it is through
the use cases (open, webhooks, extend) and the clock, never by writing rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from structlog.testing import capture_logs
from test_use_cases import ADMIN, World

from payment_window.domain.session import ROTATE_AHEAD, PaymentSession, Status
from payment_window.expiry import GROUP_MAX, SWEEP_GRACE
from payment_window.expiry_group import BUSY_RETRY
from payment_window.webhooks import Outcome


@pytest.fixture(autouse=True)
def _fresh_log_context() -> None:
    structlog.contextvars.clear_contextvars()


async def _awaiting_confirmation(world: World) -> PaymentSession:
    """A window whose buyer completed checkout with a delayed payment method."""
    session = await world.open(minutes=60)
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay_later(checkout_id)
    assert await world.webhook("evt_pending", "checkout.session.completed", checkout_id) is (
        Outcome.APPLIED
    )
    awaiting = world.store[session.id]
    assert awaiting.status is Status.AWAITING_PAYMENT_CONFIRMATION
    return awaiting


# --- rotation -------------------------------------------------------------------------------


async def test_a_window_longer_than_a_stripe_session_gets_a_new_one_before_the_old_runs_out() -> (
    None
):
    world = World()
    session = await world.open(minutes=2 * 24 * 60)
    first = str(session.checkout_session_id)
    assert session.checkout_expires_at is not None
    assert world.index.schedule[session.id] == session.checkout_expires_at - ROTATE_AHEAD

    world.clock.advance(session.checkout_expires_at - ROTATE_AHEAD - world.clock.now())
    report = await world.expiry.run_pass()

    rotated = world.store[session.id]
    assert (report.rotated, report.expired, rotated.status) == (1, 0, Status.OPEN)
    assert rotated.checkout_session_id not in (None, first)
    assert rotated.expires_at == session.expires_at
    assert world.stripe.sessions[first].status == "expired"
    assert world.stripe.sessions[str(rotated.checkout_session_id)].status == "open"
    assert world.uow.store.actions(session.id)[-1] == "checkout_rotated"
    assert world.changes.published[-1].event == "rotated"
    assert world.changes.published[-1].data["checkoutUrl"] == rotated.checkout_url
    assert world.index.schedule[session.id] == rotated.due_at
    # Both calls were made without a row lock: they take their budget slots at the gateway
    # (tests/integration/test_stripe_budget*.py), not from the pass's limiter.
    assert world.budget.acquired == 0

    world.clock.advance(rotated.expires_at - world.clock.now())
    closed = await world.expiry.run_pass()
    assert closed.expired == 1
    assert world.stripe.sessions[str(rotated.checkout_session_id)].status == "expired"


async def test_a_rotation_whose_old_session_stripe_fails_to_expire_still_moves_the_window() -> None:
    world = World()
    session = await world.open(minutes=2 * 24 * 60)
    assert session.checkout_expires_at is not None
    world.clock.advance(session.checkout_expires_at - ROTATE_AHEAD - world.clock.now())
    world.stripe.fail_next_expire()

    with capture_logs() as logs:
        report = await world.expiry.run_pass()

    assert report.rotated == 1
    assert world.store[session.id].checkout_session_id != session.checkout_session_id
    # Stripe ends the old session at its own expires_at anyway: a warning, not a failure.
    assert world.stripe.sessions[str(session.checkout_session_id)].status == "open"
    assert "checkout_expire_failed" in [line["event"] for line in logs]


# --- the confirmation re-check --------------------------------------------------------------


async def test_a_pending_payment_no_webhook_settled_is_asked_about_again_until_it_settles() -> None:
    world = World()
    awaiting = await _awaiting_confirmation(world)
    assert world.index.schedule[awaiting.id] == awaiting.confirmation_check_at

    world.clock.advance(timedelta(hours=1))
    still = await world.expiry.run_pass()
    again = world.store[awaiting.id]
    assert (still.rechecked, again.status) == (1, Status.AWAITING_PAYMENT_CONFIRMATION)
    assert again.confirmation_check_at == world.clock.now() + timedelta(hours=1)
    assert world.index.schedule[awaiting.id] == again.confirmation_check_at

    world.stripe.pay(str(awaiting.checkout_session_id))
    world.clock.advance(timedelta(hours=1))
    settled = await world.expiry.run_pass()

    paid = world.store[awaiting.id]
    assert (settled.rechecked, paid.status) == (1, Status.PAID)
    assert awaiting.id not in world.index.schedule
    assert world.uow.store.actions(awaiting.id)[-1] == "payment_completed"
    assert world.changes.published[-1].event == "paid"


async def test_a_pending_payment_stripe_reports_failed_closes_the_window_and_relists() -> None:
    world = World()
    awaiting = await _awaiting_confirmation(world)
    world.stripe.payment_fails(str(awaiting.checkout_session_id))
    world.clock.advance(timedelta(hours=1))

    report = await world.expiry.run_pass()

    closed = world.store[awaiting.id]
    assert (report.rechecked, closed.status, closed.reason) == (
        1,
        Status.EXPIRED,
        "payment_failed",
    )
    assert "auction.relist_requested" in world.uow.store.events(awaiting.id)
    assert awaiting.id not in world.index.schedule


async def test_a_pending_payment_whose_session_stripe_expired_closes_as_failed() -> None:
    world = World()
    awaiting = await _awaiting_confirmation(world)
    # Stripe gave up on the delayed payment and expired the session; the webhook never came.
    world.stripe.expire_by_itself(str(awaiting.checkout_session_id))
    world.clock.advance(timedelta(hours=1))

    await world.expiry.run_pass()

    assert world.store[awaiting.id].reason == "payment_failed"


# --- the sweep and the rebuild --------------------------------------------------------------


async def test_the_sweep_reindexes_an_overdue_window_the_index_lost_and_it_closes() -> None:
    world = World()
    session = await world.open(minutes=30)
    # The index loses the window's entry (a Redis key evicted): nothing would ever claim it.
    world.index.schedule.pop(session.id)
    world.clock.advance(timedelta(minutes=30) + SWEEP_GRACE + timedelta(seconds=1))
    assert (await world.expiry.run_pass()).claimed == 0

    with capture_logs() as logs:
        report = await world.expiry.run_pass(sweep=True)

    assert (report.reindexed, report.expired) == (1, 1)
    assert world.store[session.id].status is Status.EXPIRED
    assert "reindexed_overdue_windows" in [line["event"] for line in logs]
    assert report.as_dict()["reindexed"] == 1


async def test_the_sweep_leaves_a_window_the_index_still_holds() -> None:
    world = World()
    await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=31))
    assert await world.expiry.sweep_store() == 0


async def test_an_index_that_lost_its_contents_is_rebuilt_before_claiming() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.index.schedule.clear()
    world.index.entries.clear()
    world.index.lost = True
    world.clock.advance(timedelta(minutes=31))

    report = await world.expiry.run_pass()

    assert (report.reindexed, report.expired) == (1, 1)
    assert world.store[session.id].status is Status.EXPIRED


# --- groups, busy rows, stopping ------------------------------------------------------------


async def test_more_windows_than_a_group_holds_all_close_once() -> None:
    world = World(batch_size=100)
    sessions = [await world.open(auction=f"auc-{n}", minutes=30) for n in range(GROUP_MAX + 8)]
    world.clock.advance(timedelta(minutes=30))

    report = await world.expiry.run_pass()

    assert (report.claimed, report.expired) == (len(sessions), len(sessions))
    assert all(world.store[s.id].status is Status.EXPIRED for s in sessions)
    assert world.budget.acquired == len(sessions)
    assert sum(world.uow.store.actions(s.id).count("payment_expired") for s in sessions) == len(
        sessions
    )


async def test_a_window_another_transaction_holds_is_looked_at_again_shortly() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))

    async with world.uow() as other:  # an extension or a webhook holding the row
        await other.sessions.get(session.id, for_update=True)
        busy = await world.expiry.run_pass()
        assert (busy.rescheduled, busy.expired) == (1, 0)
        assert world.index.schedule[session.id] == world.clock.now() + BUSY_RETRY
    world.clock.advance(BUSY_RETRY)
    assert (await world.expiry.run_pass()).expired == 1


async def test_a_window_extended_while_its_claim_was_in_hand_goes_back_on_the_schedule() -> None:
    world = World(reminders=(15,))
    session = await world.open(minutes=60)
    world.clock.advance(timedelta(minutes=45))  # its reminder is due
    claims = await world.index.claim_due(10, 30)
    extended = await world.windows.extend(session.id, 30, ADMIN)

    report = await world.expiry.close_claims(claims)

    assert (report.claimed, report.rescheduled, report.reminded) == (1, 1, 0)
    assert world.store[session.id].status is Status.OPEN
    assert world.index.schedule[session.id] == extended.due_at
    assert extended.due_at == extended.expires_at - timedelta(minutes=15)


async def test_a_stopping_worker_gives_its_claims_back_untouched() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    claims = await world.index.claim_due(10, 30)
    world.expiry.stop()

    report = await world.expiry.close_claims(claims)

    assert world.expiry.stopping
    assert (report.expired, world.store[session.id].status) == (0, Status.OPEN)
    assert session.id not in world.index.claims
    assert world.index.schedule[session.id] == session.expires_at
    await world.expiry.wait_stopping(5)  # returns at once: a stop was asked


async def test_the_oldest_open_deadline_is_the_earliest_open_window() -> None:
    world = World()
    assert await world.expiry.oldest_open_deadline() is None
    late = await world.open(auction="auc-late", minutes=90)
    early = await world.open(auction="auc-early", minutes=30)
    await world.windows.terminate(early.id, ADMIN)
    assert await world.expiry.oldest_open_deadline() == late.expires_at


# --- faults ---------------------------------------------------------------------------------


async def test_a_window_whose_transaction_fails_is_retried_and_closes_once() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.uow.store.failing_commits = 1

    with capture_logs() as logs:
        failed = await world.expiry.run_pass()

    stored = world.store[session.id]
    assert (failed.retried, stored.status, stored.expiry_attempts) == (1, Status.OPEN, 1)
    assert "expiry_retry_scheduled" in [line["event"] for line in logs]
    assert world.uow.store.actions(session.id) == ["payment_window_opened"]
    assert world.metrics.counts["payments.window.stripe_errors"] == 1

    world.clock.advance(timedelta(minutes=5))
    retried = await world.expiry.run_pass()

    # Stripe already expired the session in the failed attempt: the retry records it once.
    assert retried.expired == 1
    assert world.uow.store.actions(session.id).count("payment_expired") == 1


async def test_a_failure_the_store_cannot_even_count_still_comes_back() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.uow.store.failing_commits = 2  # the group, then the attempt's bookkeeping

    with capture_logs():
        report = await world.expiry.run_pass()

    assert report.retried == 1
    assert world.store[session.id].expiry_attempts == 0
    assert world.index.schedule[session.id] > world.clock.now()


async def test_a_stripe_failure_with_the_index_down_is_logged_and_the_lease_brings_it_back() -> (
    None
):
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.stripe.fail_next()
    world.index.down = True

    with capture_logs() as logs:
        report = await world.expiry.run_pass()

    assert report.retried == 1
    assert "expiry_retry_not_scheduled" in [line["event"] for line in logs]
    assert world.store[session.id].expiry_attempts == 1
    world.index.down = False
    world.clock.advance(timedelta(seconds=31))  # the claim's lease ends
    assert (await world.expiry.run_pass()).expired == 1


# --- store faults between claiming and recording, and the paid window's other session -------


async def test_claims_are_given_back_at_once_when_the_store_fails_mid_pass() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.uow.store.failing_reads = 1  # the store drops the pass's first read

    with capture_logs() as logs, pytest.raises(ConnectionError):
        await world.expiry.run_pass()

    # Not left to its lease: due again at its own deadline, for any worker to take now.
    assert "expiry_claims_given_back" in [line["event"] for line in logs]
    assert world.index.schedule[session.id] <= world.clock.now()
    assert session.id not in world.index.claims
    assert (await world.expiry.run_pass()).expired == 1


async def test_claims_lapse_when_the_index_fails_too_and_the_window_still_closes() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.uow.store.failing_reads = 1
    claims = await world.index.claim_due(10, 30)
    world.index.down = True

    with capture_logs() as logs, pytest.raises(ConnectionError):
        await world.expiry.close_claims(claims)

    assert "expiry_claims_left_to_lapse" in [line["event"] for line in logs]
    world.index.down = False
    world.clock.advance(timedelta(seconds=31))  # the lease ends
    assert (await world.expiry.run_pass()).expired == 1
    assert world.store[session.id].status is Status.EXPIRED


async def _paid_on_the_rotated_away_link(world: World) -> tuple[PaymentSession, str]:
    """A long window, rotated; its buyer paid on the old link: the current one is left to the
    worker to expire. The window and its current (still open) session's id."""
    session = await world.open(minutes=2 * 24 * 60)
    old = str(session.checkout_session_id)
    assert session.checkout_expires_at is not None
    world.clock.advance(session.checkout_expires_at - ROTATE_AHEAD - world.clock.now())
    assert (await world.expiry.run_pass()).rotated == 1
    current = str(world.store[session.id].checkout_session_id)
    world.stripe.pay(old)
    assert await world.webhook("evt_paid_old", "checkout.session.completed", old) is (
        Outcome.APPLIED
    )
    paid = world.store[session.id]
    assert (paid.status, paid.expire_checkout_id) == (Status.PAID, current)
    return paid, current


async def test_the_paid_windows_other_session_is_expired_by_the_worker_with_retries() -> None:
    world = World()
    paid, current = await _paid_on_the_rotated_away_link(world)
    world.stripe.fail_next_expire(1)

    with capture_logs():
        failed = await world.expiry.run_pass()

    assert (failed.retried, failed.expired_other) == (1, 0)
    assert world.store[paid.id].expiry_attempts == 1
    assert world.stripe.sessions[current].status == "open"
    world.clock.advance(timedelta(minutes=5))
    retried = await world.expiry.run_pass()
    assert retried.expired_other == 1
    assert world.stripe.sessions[current].status == "expired"
    assert world.store[paid.id].expire_checkout_id is None
    assert world.store[paid.id].status is Status.PAID


async def test_the_paid_windows_other_session_already_closed_at_stripe_is_done() -> None:
    world = World()
    paid, current = await _paid_on_the_rotated_away_link(world)
    world.stripe.expire_by_itself(current)

    with capture_logs() as logs:
        report = await world.expiry.run_pass()

    assert (report.expired_other, report.retried) == (1, 0)
    assert "other_checkout_not_open" in [line["event"] for line in logs]
    assert world.store[paid.id].expire_checkout_id is None
