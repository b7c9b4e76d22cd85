"""The money path as real Stripe behaves, driven through the API and the local Stripe server.

Each test reaches its state the way a user would: windows opened, extended and terminated
through the API, payments made at the stand-in and reported as signed webhooks, deadlines
passed on the clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from sqlalchemy import select
from test_stripe_webhooks import COMPLETED, SECRET, send, stripe_event

from payment_window.adapters.tables import audit_log, outbox
from payment_window.config import Settings
from payment_window.domain.session import PaymentSession


@pytest.fixture
async def api(redis_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(
        redis_settings,
        stripe,
        stripe_webhook_secret=SecretStr(SECRET),
        reminder_offsets_minutes=[],
        confirmation_recheck_minutes=0.02,
    )
    async with running_api(settings) as running:
        yield running


async def row(api: Api, session_id: str) -> PaymentSession:
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None
    return session


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


async def audit_details(api: Api, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(
            select(audit_log.c.action, audit_log.c.details)
            .where(audit_log.c.session_id == session_id)
            .order_by(audit_log.c.id)
        )
        return [(r.action, r.details) for r in rows]


async def outbox_events(api: Api, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(
            select(outbox.c.event_type, outbox.c.payload).where(outbox.c.session_id == session_id)
        )
        return [(r.event_type, r.payload) for r in rows]


async def until_closed(api: Api, session_id: str, seconds: float = 15.0) -> dict[str, Any]:
    """Run expiry passes, as a worker would, until the window leaves `open`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        await api.container.expiry_task().run_pass()
        body = await status(api, session_id)
        if body["status"] != "open" or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.1)


async def status(api: Api, session_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/payments/checkout/{session_id}/status", headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def override(api: Api, session_id: str, **body: Any) -> Any:
    return await api.client.post(
        f"/payments/window/{session_id}/override", json=body, headers=api.admin
    )


# --- one Stripe session per window that fits one -------------------------------------------------


@pytest.mark.parametrize("minutes", [None, 60, 1440, 90])
async def test_a_window_that_fits_one_stripe_session_is_due_only_at_its_deadline(
    api: Api, stripe: RunningStripe, minutes: int | None
) -> None:
    fields = {} if minutes is None else {"windowMinutes": minutes}
    opened = await api.open_window(**fields)
    window = await row(api, opened["sessionId"])
    assert window.checkout_session_id is not None
    at_stripe = stripe.session(window.checkout_session_id)

    # The buyer can pay at Stripe until the very moment the status body shows, and no longer.
    deadline = parse(opened["expiresAt"])
    assert at_stripe["expires_at"] == int(deadline.timestamp())
    assert deadline.microsecond == 0
    length = deadline - parse(opened["serverTime"])
    asked = timedelta(minutes=minutes or 1440)
    assert asked - timedelta(seconds=12) < length <= asked
    # Nothing else is planned for it: no replacement session before the deadline.
    assert not window.outlives_checkout()
    assert await api.container.index.next_due() == deadline


async def test_an_extension_past_the_stripe_session_makes_the_new_one_at_once(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window(windowMinutes=23 * 60)
    first = (await row(api, opened["sessionId"])).checkout_session_id
    assert first is not None

    response = await override(api, opened["sessionId"], action="extend", minutes=120)

    assert response.status_code == 200, response.text
    extended = response.json()
    window = await row(api, opened["sessionId"])
    assert window.checkout_session_id != first
    assert extended["checkoutUrl"] == window.checkout_url
    assert stripe.session(first)["status"] == "expired"
    assert stripe.session(window.checkout_session_id or "")["status"] == "open"


# --- idempotency keys --------------------------------------------------------------------------


async def test_a_terminate_retried_after_a_stripe_500_succeeds(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window()
    checkout = (await row(api, opened["sessionId"])).checkout_session_id
    stripe.fail_next(1, 500, path="/expire")

    failed = await override(api, opened["sessionId"], action="terminate")
    assert failed.status_code == 503
    assert assert_error_shape(failed)["code"] == "payment_provider_unavailable"
    assert (await status(api, opened["sessionId"]))["status"] == "open"

    # Stripe saved that 500 under the first key; the retry is a new attempt with a new key.
    retried = await override(api, opened["sessionId"], action="terminate")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "expired"
    assert stripe.session(checkout or "")["status"] == "expired"


async def test_a_rotation_retried_after_a_stripe_500_succeeds(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window(windowMinutes=23 * 60)
    stripe.fail_next(1, 500, path="/v1/checkout/sessions")

    failed = await override(api, opened["sessionId"], action="extend", minutes=120)
    assert failed.status_code == 503
    assert (await status(api, opened["sessionId"]))["expiresAt"] == opened["expiresAt"]

    # A second later the new session's `expires_at` differs: the old key would be refused.
    await asyncio.sleep(1.1)
    retried = await override(api, opened["sessionId"], action="extend", minutes=120)
    assert retried.status_code == 200, retried.text
    assert parse(retried.json()["expiresAt"]) == parse(opened["expiresAt"]) + timedelta(hours=2)


# --- answers that will never change ------------------------------------------------------------


async def test_a_session_stripe_does_not_know_closes_with_an_operations_alert(
    api: Api, stripe: RunningStripe
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    opened = await api.open_window(expiresAt=soon.isoformat().replace("+00:00", "Z"))
    checkout = (await row(api, opened["sessionId"])).checkout_session_id
    stripe.app.store.forget(checkout or "")

    closed = await until_closed(api, opened["sessionId"])

    assert (closed["status"], closed["reason"]) == ("expired", "checkout_missing")
    window = await row(api, opened["sessionId"])
    assert window.expiry_attempts == 0
    events = dict(await outbox_events(api, opened["sessionId"]))
    assert events["operations.checkout_missing"]["checkoutSessionId"] == checkout
    assert "auction.relist_requested" in events
    actions = [action for action, _ in await audit_details(api, opened["sessionId"])]
    assert actions == ["payment_window_opened", "payment_expired", "operations_alerted"]


# --- payments awaiting confirmation ------------------------------------------------------------


async def test_a_payment_awaiting_confirmation_is_settled_from_stripe_without_a_webhook(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window()
    checkout = (await row(api, opened["sessionId"])).checkout_session_id or ""
    stripe.complete(checkout, paid=False)
    assert await send(api, stripe_event(COMPLETED, checkout, payment_status="unpaid")) == "applied"
    assert (await status(api, opened["sessionId"]))["status"] == "awaiting_payment_confirmation"

    # The bank confirms; Stripe's follow-up webhook never arrives.
    stripe.app.store.settle_delayed_payment(checkout, succeeded=True)
    deadline = asyncio.get_running_loop().time() + 15
    while (await status(api, opened["sessionId"]))["status"] != "paid":
        assert asyncio.get_running_loop().time() < deadline, "never re-checked at Stripe"
        await api.container.expiry_task().run_pass()
        await asyncio.sleep(0.2)

    actions = [action for action, _ in await audit_details(api, opened["sessionId"])]
    assert actions == ["payment_window_opened", "payment_pending", "payment_completed"]
    assert "auction.payment_received" in dict(await outbox_events(api, opened["sessionId"]))


async def test_a_failed_delayed_payment_found_at_stripe_closes_the_window(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window()
    checkout = (await row(api, opened["sessionId"])).checkout_session_id or ""
    stripe.complete(checkout, paid=False)
    await send(api, stripe_event(COMPLETED, checkout, payment_status="unpaid"))
    stripe.app.store.settle_delayed_payment(checkout, succeeded=False)

    deadline = asyncio.get_running_loop().time() + 15
    while (body := await status(api, opened["sessionId"]))["status"] != "expired":
        assert asyncio.get_running_loop().time() < deadline, "never re-checked at Stripe"
        await api.container.expiry_task().run_pass()
        await asyncio.sleep(0.2)
    assert body["reason"] == "payment_failed"


# --- double payments ---------------------------------------------------------------------------


async def test_a_second_payment_for_one_window_alerts_operations(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window(windowMinutes=23 * 60)
    first = (await row(api, opened["sessionId"])).checkout_session_id or ""
    # Expiring the old session after the rotation fails: it stays payable.
    stripe.fail_next(1, 500, path=f"{first}/expire")
    response = await override(api, opened["sessionId"], action="extend", minutes=120)
    assert response.status_code == 200, response.text
    second = (await row(api, opened["sessionId"])).checkout_session_id or ""
    assert stripe.session(first)["status"] == "open"

    stripe.complete(second)
    assert await send(api, stripe_event(COMPLETED, second)) == "applied"
    stripe.complete(first)
    await send(api, stripe_event(COMPLETED, first))

    body = await status(api, opened["sessionId"])
    assert body["status"] == "paid"
    events = await outbox_events(api, opened["sessionId"])
    [alert] = [payload for event, payload in events if event == "payment.duplicate_detected"]
    assert sorted(alert["checkoutSessionIds"]) == sorted([first, second])
    audit = dict(await audit_details(api, opened["sessionId"]))
    assert audit["duplicate_payment_detected"]["checkoutSessionId"] == first
    # The same payment reported twice is not a second payment.
    await send(api, stripe_event(COMPLETED, second))
    events = await outbox_events(api, opened["sessionId"])
    assert [event for event, _ in events].count("payment.duplicate_detected") == 1
    summary = await api.client.get("/payments/windows/summary", headers=api.admin)
    assert summary.status_code == 200, summary.text
    assert summary.json()["duplicatePayments"] == 1


async def test_a_late_payment_after_expiry_records_its_own_reason(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window()
    checkout = (await row(api, opened["sessionId"])).checkout_session_id or ""
    terminated = await override(api, opened["sessionId"], action="terminate")
    assert terminated.json()["reason"] == "admin_terminated"

    # Stripe completed the session concurrently with the expiry: the money wins.
    await send(api, stripe_event(COMPLETED, checkout))

    body = await status(api, opened["sessionId"])
    assert (body["status"], body["reason"]) == ("paid", "paid_after_close")
    assert json.dumps(body)  # one shape
