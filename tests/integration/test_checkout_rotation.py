"""A window can outlive a Stripe Checkout Session (at most 24 hours, end fixed at creation):
the service replaces the session before it runs out, and the buyer's link follows."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.session import Status
from payment_window.service import OpenWindow

ADMIN = Actor("ops-1", Role.ADMIN)
MARKETPLACE = Actor("marketplace", Role.SERVICE)


def an_auction(**changes: object) -> OpenWindow:
    fields: dict[str, object] = {
        "auction_id": "auc_rot",
        "maker_id": "mk_1",
        "buyer_id": "by_1",
        "amount": 5000,
        "currency": "usd",
    }
    fields.update(changes)
    return OpenWindow(**fields)  # type: ignore[arg-type]


async def test_extending_past_the_stripe_session_opens_a_new_one_and_expires_the_old(
    container: Container, stripe: RunningStripe
) -> None:
    opened = await container.windows.open(an_auction(window_minutes=60), MARKETPLACE)
    assert opened.checkout_expires_at is not None
    assert abs(opened.checkout_expires_at - opened.expires_at) < timedelta(seconds=1)

    extended = await container.windows.extend(opened.id, 30, ADMIN)

    assert extended.checkout_session_id != opened.checkout_session_id
    assert extended.checkout_url != opened.checkout_url
    assert extended.checkout_expires_at is not None
    assert extended.checkout_expires_at >= extended.expires_at - timedelta(seconds=1)
    assert extended.version == opened.version + 1
    assert stripe.session(opened.checkout_session_id)["status"] == "expired"
    assert stripe.session(extended.checkout_session_id)["status"] == "open"
    status = await container.windows.status(opened.id, ADMIN)
    assert status.checkout_url == extended.checkout_url


async def test_a_short_extension_inside_the_stripe_session_keeps_it(
    container: Container, stripe: RunningStripe
) -> None:
    # Stripe's 30-minute minimum gives a 5-minute window a session that outlasts it.
    opened = await container.windows.open(an_auction(window_minutes=5), MARKETPLACE)

    extended = await container.windows.extend(opened.id, 10, ADMIN)

    assert extended.checkout_session_id == opened.checkout_session_id
    assert stripe.session(opened.checkout_session_id)["status"] == "open"


async def test_a_window_longer_than_a_stripe_session_is_rotated_before_the_session_runs_out(
    container: Container, stripe: RunningStripe
) -> None:
    now = container.clock.now()
    opened = await container.windows.open(
        an_auction(expires_at=now + timedelta(days=3)), MARKETPLACE
    )
    assert opened.checkout_expires_at is not None
    assert opened.checkout_expires_at <= now + timedelta(hours=24)
    assert opened.due_at < opened.checkout_expires_at
    # Pretend the first day has passed: the stored session is about to run out.
    async with container.uow() as uow:
        aged = replace(
            opened,
            checkout_expires_at=now + timedelta(minutes=5),
            version=opened.version + 1,
        )
        await uow.sessions.update(aged)
        await uow.commit()
    await container.index.put(aged)

    report = await container.expiry_task().run_pass()

    async with container.uow() as uow:
        rotated = await uow.sessions.get(opened.id)
    assert rotated is not None
    assert report.rotated == 1 and report.expired == 0
    assert rotated.status is Status.OPEN
    assert rotated.expires_at == opened.expires_at
    assert rotated.checkout_session_id != opened.checkout_session_id
    assert rotated.checkout_expires_at is not None
    assert rotated.checkout_expires_at > now + timedelta(hours=23)
    assert stripe.session(opened.checkout_session_id)["status"] == "expired"
    next_due = await container.index.next_due()
    assert next_due is not None and next_due > now + timedelta(hours=23)


async def test_an_extension_that_fails_to_commit_expires_the_session_it_made(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    container = await bootstrap(with_stripe(pg_settings, stripe))
    try:
        opened = await container.windows.open(an_auction(window_minutes=60), MARKETPLACE)
        # A real store fault at the extension's commit: its audit entry is refused.
        async with container.engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE FUNCTION refuse_extension() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'store refused'; END $$ LANGUAGE plpgsql"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_extension BEFORE INSERT ON audit_log FOR EACH ROW "
                    "WHEN (NEW.action = 'payment_window_extended') "
                    "EXECUTE FUNCTION refuse_extension()"
                )
            )
        stripe.reset_calls()

        with pytest.raises(DBAPIError):
            await container.windows.extend(opened.id, 30, ADMIN)

        # The new session was made (the window outlived its first), then closed at Stripe: it
        # was never stored, so nobody could have paid through it.
        assert stripe.calls("/v1/checkout/sessions", method="POST") == 1
        made = [
            s
            for s in stripe.app.store.list(100, None)["data"]
            if s["id"] != opened.checkout_session_id
        ]
        assert [s["status"] for s in made if s["metadata"].get("sessionId") == opened.id] == [
            "expired"
        ]
        stored = await container.windows.status(opened.id, ADMIN)
        assert stored.expires_at == opened.expires_at
        assert stored.checkout_url == opened.checkout_url
        assert stripe.session(opened.checkout_session_id or "")["status"] == "open"
    finally:
        await container.close()
