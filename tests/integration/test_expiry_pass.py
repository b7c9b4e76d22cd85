"""One expiry pass against the real store, both index adapters and the local Stripe server."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from conftest import with_stripe
from devstripe.testing import RunningStripe
from moments import until_next_due
from seeding import count_rows, seed_windows
from sqlalchemy import select, text

from payment_window.adapters.tables import audit_log, outbox
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import WindowElapsed
from payment_window.domain.session import Status

ADMIN = Actor("ops-1", Role.ADMIN)


async def stored(container: Container, session_id: str):  # type: ignore[no-untyped-def]
    async with container.uow() as uow:
        return await uow.sessions.get(session_id)


async def audit_actions(container: Container, session_id: str) -> list[str]:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(audit_log.c.action)
            .where(audit_log.c.session_id == session_id)
            .order_by(audit_log.c.id)
        )
        return [row.action for row in rows]


async def outbox_events(container: Container, session_id: str) -> list[tuple[str, str]]:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(outbox.c.destination, outbox.c.event_type).where(
                outbox.c.session_id == session_id
            )
        )
        return sorted((row.destination, row.event_type) for row in rows)


async def test_a_due_window_is_expired_at_stripe_then_closed_with_one_audit_entry(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(container, stripe, 1)

    report = await container.expiry_task().run_pass()

    closed = await stored(container, window.id)
    assert report.expired == 1
    assert closed.status is Status.EXPIRED
    assert closed.reason == "window_elapsed"
    assert closed.expired_at >= window.expires_at
    assert stripe.session(window.checkout_session_id)["status"] == "expired"
    assert await audit_actions(container, window.id) == ["payment_expired"]
    assert await outbox_events(container, window.id) == [
        ("analytics", "payments.checkout.expired"),
        ("auction", "auction.relist_requested"),
        ("buyer", "payment_window.expired"),
        ("maker", "payment_window.expired"),
    ]
    assert await container.index.pending_count() == 0


async def test_each_window_costs_exactly_one_stripe_call(
    container: Container, stripe: RunningStripe
) -> None:
    windows = await seed_windows(container, stripe, 40)
    stripe.reset_calls()

    report = await container.expiry_task().run_pass()

    assert report.expired == len(windows)
    assert stripe.calls("/expire") == len(windows)
    assert stripe.calls() == len(windows)


async def test_a_window_before_its_deadline_is_left_open(
    container: Container, stripe: RunningStripe
) -> None:
    now = container.clock.now()
    [window] = await seed_windows(container, stripe, 1, deadline=now + timedelta(minutes=10))

    report = await container.expiry_task().run_pass()

    assert report.claimed == 0
    assert (await stored(container, window.id)).status is Status.OPEN
    assert stripe.session(window.checkout_session_id)["status"] == "open"
    assert await container.index.pending_count() == 1


async def test_a_buyer_who_paid_at_the_last_second_is_recorded_paid_not_expired(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(container, stripe, 1)
    stripe.complete(window.checkout_session_id, paid=True)

    report = await container.expiry_task().run_pass()

    session = await stored(container, window.id)
    assert report.paid == 1 and report.expired == 0
    assert session.status is Status.PAID
    assert session.paid_at is not None
    assert await audit_actions(container, window.id) == ["payment_completed"]
    events = await outbox_events(container, window.id)
    assert ("auction", "auction.payment_received") in events
    assert not [event for event in events if event[1].startswith("auction.relist")]
    assert await container.index.pending_count() == 0


async def test_a_delayed_payment_method_at_the_last_second_stops_the_window(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(container, stripe, 1)
    stripe.complete(window.checkout_session_id, paid=False)

    await container.expiry_task().run_pass()

    session = await stored(container, window.id)
    assert session.status is Status.AWAITING_PAYMENT_CONFIRMATION
    assert await audit_actions(container, window.id) == ["payment_pending"]
    # The window no longer runs; Stripe is asked again about the payment in an hour.
    next_look = await container.index.next_due()
    assert next_look is not None
    wait = next_look - await container.index.now()
    assert timedelta(minutes=59) < wait <= timedelta(minutes=60)


async def test_a_window_past_its_deadline_cannot_be_extended_while_a_worker_holds_it(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(container, stripe, 1)
    claims = await container.index.claim_due(10, lease_seconds=30)
    assert [claim.session_id for claim in claims] == [window.id]

    with pytest.raises(WindowElapsed):
        await container.windows.extend(window.id, 30, ADMIN)
    report = await container.expiry_task().close_claims(claims)

    session = await stored(container, window.id)
    assert report.expired == 1
    assert session.status is Status.EXPIRED
    assert stripe.session(window.checkout_session_id)["status"] == "expired"


async def test_a_session_stripe_already_expired_is_closed_once(
    container: Container, stripe: RunningStripe
) -> None:
    """A worker that died after Stripe answered but before its commit leaves exactly this."""
    [window] = await seed_windows(container, stripe, 1)
    await container.gateway.expire(window.checkout_session_id, idempotency_key="elsewhere")

    first = await container.expiry_task().run_pass()
    second = await container.expiry_task().run_pass()

    assert first.expired == 1 and second.claimed == 0
    assert (await stored(container, window.id)).status is Status.EXPIRED
    assert await audit_actions(container, window.id) == ["payment_expired"]


async def test_during_a_stripe_outage_windows_stay_open_and_indexed_then_all_expire(
    container: Container, stripe: RunningStripe
) -> None:
    windows = await seed_windows(container, stripe, 12)
    stripe.reset_calls()
    stripe.fail_for(60, status=500, path="/expire")

    outage = await container.expiry_task().run_pass()

    assert outage.retried == len(windows) and outage.expired == 0
    assert await container.index.pending_count() == len(windows)
    for window in windows:
        session = await stored(container, window.id)
        assert session.status is Status.OPEN
        assert session.expiry_attempts == 1
        assert "500" in (session.last_expiry_error or "") or session.last_expiry_error
    # One try each: a call made under the row lock is not retried inside the lock; the window
    # went back with a backoff (its next attempt carries a new idempotency key).
    assert stripe.calls("/expire") == len(windows)

    stripe.clear_faults()
    expired = 0
    for _ in range(40):
        expired += (await container.expiry_task().run_pass()).expired
        if expired == len(windows):
            break
        await until_next_due(container.index)  # the retry, after its backoff
    assert expired == len(windows)
    assert await count_rows(container, "audit_log") == len(windows)


async def test_rate_limits_and_dropped_connections_delay_but_lose_nothing(
    container: Container, stripe: RunningStripe
) -> None:
    windows = await seed_windows(container, stripe, 6)
    stripe.rate_limit_next(4, path="/expire")
    stripe.drop_next(3, path="/expire")

    expired = 0
    for _ in range(40):
        expired += (await container.expiry_task().run_pass()).expired
        if expired == len(windows):
            break
        await until_next_due(container.index)  # the retry, after its backoff

    assert expired == len(windows)
    assert await count_rows(container, "audit_log") == len(windows)
    assert await container.index.pending_count() == 0


async def test_an_overdue_window_missing_from_the_index_is_swept_back_and_expired(
    container: Container, stripe: RunningStripe
) -> None:
    long_ago = container.clock.now() - timedelta(minutes=5)
    [window] = await seed_windows(container, stripe, 1, deadline=long_ago)
    await container.index.forget(window.id)

    report = await container.expiry_task().run_pass(sweep=True)

    assert report.reindexed in (0, 1)  # the SQL index is the store: nothing to re-index
    assert report.expired == 1
    assert (await stored(container, window.id)).status is Status.EXPIRED


async def test_one_windows_stripe_failure_does_not_hold_back_the_others_closed_with_it(
    container: Container, stripe: RunningStripe
) -> None:
    windows = await seed_windows(container, stripe, 6)  # due together: taken on as one group
    failing = windows[2]
    assert failing.checkout_session_id
    # Its one try (a call under a row lock is not retried inside the lock) fails.
    stripe.fail_next(1, status=500, path=f"{failing.checkout_session_id}/expire")

    first = await container.expiry_task().run_pass()

    assert (first.expired, first.retried) == (len(windows) - 1, 1)
    for window in windows:
        session = await stored(container, window.id)
        if window is failing:
            assert (session.status, session.expiry_attempts) == (Status.OPEN, 1)
            assert await audit_actions(container, window.id) == []
        else:
            assert session.status is Status.EXPIRED
            assert await audit_actions(container, window.id) == ["payment_expired"]
    assert await container.index.pending_count() == 1  # back on the schedule, with a backoff

    expired = 0
    for _ in range(40):
        expired += (await container.expiry_task().run_pass()).expired
        if expired:
            break
        await until_next_due(container.index)  # the retry, after its backoff
    assert (await stored(container, failing.id)).status is Status.EXPIRED
    assert await count_rows(container, "audit_log") == len(windows)


async def test_a_failure_the_store_cannot_record_is_logged_with_its_window_and_backed_off(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    container = await bootstrap(with_stripe(pg_settings, stripe))
    try:
        [window] = await seed_windows(container, stripe, 1)
        async with container.uow() as uow:  # two failed attempts already on the row
            await uow.sessions.record_expiry_failure(window.id, "earlier")
            await uow.sessions.record_expiry_failure(window.id, "earlier")
            await uow.commit()
        # A real store fault: the row refuses to count another failed attempt.
        async with container.engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE FUNCTION refuse_attempts() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'store refused'; END $$ LANGUAGE plpgsql"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_attempts BEFORE UPDATE ON payment_sessions FOR EACH ROW "
                    "WHEN (NEW.expiry_attempts > OLD.expiry_attempts) "
                    "EXECUTE FUNCTION refuse_attempts()"
                )
            )
        stripe.fail_next(1, status=500, path="/expire")

        with structlog.testing.capture_logs() as logs:
            report = await container.expiry_task().run_pass()

        assert report.retried == 1 and report.expired == 0
        unrecorded = [e for e in logs if e["event"] == "expiry_failure_not_recorded"]
        assert [e["session_id"] for e in unrecorded] == [window.id]
        scheduled = [e for e in logs if e["event"] == "expiry_retry_scheduled"]
        # Backed off by the attempts the store holds (two), counting this one: not "attempt 1".
        assert [e["attempts"] for e in scheduled] == [3]
        assert await container.index.pending_count() == 1
    finally:
        await container.close()
