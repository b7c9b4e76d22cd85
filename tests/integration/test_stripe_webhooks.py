"""POST /payments/stripe/webhook: signed, deduplicated, converging whatever the order."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from sqlalchemy import select

from payment_window.adapters.tables import audit_log, outbox, stripe_events
from payment_window.config import Settings

SECRET = "whsec_test_0123456789abcdef"
URL = "/payments/stripe/webhook"
COMPLETED = "checkout.session.completed"
SUCCEEDED = "checkout.session.async_payment_succeeded"
FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"


@pytest.fixture
async def api(redis_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(redis_settings, stripe, stripe_webhook_secret=SecretStr(SECRET))
    async with running_api(settings) as running:
        yield running


def signature(payload: str, *, secret: str = SECRET, at: int | None = None) -> str:
    """Stripe's scheme: HMAC-SHA256 over `{t}.{payload}`, sent as `t=…,v1=…`."""
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def stripe_event(
    event_type: str,
    checkout_session_id: str,
    *,
    payment_status: str = "paid",
    event_id: str | None = None,
) -> str:
    status = "expired" if event_type == EXPIRED else "complete"
    if event_type == EXPIRED:
        payment_status = "unpaid"
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": checkout_session_id,
                    "object": "checkout.session",
                    "status": status,
                    "payment_status": payment_status,
                    "expires_at": int(time.time()) + 3600,
                    "url": None,
                }
            },
        }
    )


async def deliver(api: Api, payload: str, header: str | None = "sign") -> Any:
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        headers["Stripe-Signature"] = signature(payload)
    elif header is not None:
        headers["Stripe-Signature"] = header
    return await api.client.post(URL, content=payload.encode(), headers=headers)


async def send(api: Api, payload: str) -> str:
    response = await deliver(api, payload)
    assert response.status_code == 200, response.text
    outcome: str = response.json()["outcome"]
    return outcome


async def stored(api: Api, session_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/payments/checkout/{session_id}/status", headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit_actions(api: Api, session_id: str) -> Counter[str]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(
            select(audit_log.c.action).where(audit_log.c.session_id == session_id)
        )
        return Counter(row.action for row in rows)


async def outbox_rows(api: Api, session_id: str) -> list[Any]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(select(outbox).where(outbox.c.session_id == session_id))
        return list(rows)


async def opened(api: Api) -> tuple[str, str]:
    body = await api.open_window()
    async with api.container.uow() as uow:
        session = await uow.sessions.get(body["sessionId"])
    assert session is not None and session.checkout_session_id
    return session.id, session.checkout_session_id


# --- trust -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["unsigned", "tampered", "stale", "wrong-secret", "garbage-header", "not-an-event"]
)
async def test_an_untrusted_webhook_is_400_and_changes_nothing(api: Api, case: str) -> None:
    session_id, checkout_id = await opened(api)
    payload = stripe_event(COMPLETED, checkout_id)
    header: str | None = signature(payload)
    if case == "unsigned":
        header = None
    elif case == "tampered":
        payload = payload.replace('"paid"', '"unpaid"')
    elif case == "stale":
        header = signature(payload, at=int(time.time()) - 301)
    elif case == "wrong-secret":
        header = signature(payload, secret="whsec_someone_else")
    elif case == "garbage-header":
        header = "v1=abc"
    elif case == "not-an-event":
        payload = json.dumps([{"type": COMPLETED}])
        header = signature(payload)
    before = await api.counts()

    response = await deliver(api, payload, header)

    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_webhook"
    assert await api.counts() == before
    assert (await stored(api, session_id))["status"] == "open"


async def test_a_replayed_delivery_older_than_five_minutes_is_refused(api: Api) -> None:
    session_id, checkout_id = await opened(api)
    payload = stripe_event(COMPLETED, checkout_id)
    captured = signature(payload, at=int(time.time()) - 6 * 60)

    response = await deliver(api, payload, captured)

    assert response.status_code == 400
    assert (await stored(api, session_id))["status"] == "open"


async def test_the_same_event_delivered_again_is_acknowledged_and_changes_nothing(
    api: Api,
) -> None:
    session_id, checkout_id = await opened(api)
    payload = stripe_event(COMPLETED, checkout_id)

    outcomes = [await send(api, payload) for _ in range(3)]

    assert outcomes == ["applied", "duplicate", "duplicate"]
    assert (await audit_actions(api, session_id))["payment_completed"] == 1
    async with api.container.engine.connect() as connection:
        assert len(list(await connection.execute(select(stripe_events)))) == 1


# --- each event ------------------------------------------------------------------------------


async def test_a_completed_paid_checkout_marks_the_window_paid(api: Api) -> None:
    session_id, checkout_id = await opened(api)

    assert await send(api, stripe_event(COMPLETED, checkout_id)) == "applied"

    body = await stored(api, session_id)
    assert (body["status"], body["version"], body["remainingTime"]) == ("paid", 2, 0)
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None and session.paid_at is not None
    assert session_id not in await api.container.index.scheduled_ids()
    assert (await audit_actions(api, session_id))["payment_completed"] == 1
    events = Counter(row.event_type for row in await outbox_rows(api, session_id))
    assert events["auction.payment_received"] == 1
    assert events["payment_window.paid"] == 2  # maker and buyer


async def test_events_for_sessions_we_do_not_know_are_acknowledged(api: Api) -> None:
    before = await api.counts()

    assert await send(api, stripe_event(COMPLETED, "cs_test_not_ours")) == "unknown_session"
    assert await send(api, stripe_event("customer.created", "cus_1")) == "ignored"

    assert await api.counts() == before


# --- convergence: every pair in both orders, each event delivered three times ---------------

PAIRS: list[tuple[str, tuple[str, str], tuple[str, str], str, str | None]] = [
    # (name, first (type, payment_status), second, final status, final reason)
    ("completed-and-expired", (COMPLETED, "paid"), (EXPIRED, ""), "paid", "stripe_expired"),
    ("unpaid-then-succeeded", (COMPLETED, "unpaid"), (SUCCEEDED, "paid"), "paid", None),
    ("unpaid-then-failed", (COMPLETED, "unpaid"), (FAILED, "unpaid"), "expired", "payment_failed"),
]


@pytest.mark.parametrize("order", ["in-order", "reversed"])
@pytest.mark.parametrize("pair", PAIRS, ids=[p[0] for p in PAIRS])
async def test_a_sessions_events_converge_in_any_order_and_any_number_of_times(
    api: Api, pair: tuple[str, tuple[str, str], tuple[str, str], str, str | None], order: str
) -> None:
    _name, first, second, final_status, _reason = pair
    session_id, checkout_id = await opened(api)
    events = [
        stripe_event(kind, checkout_id, payment_status=status) for kind, status in (first, second)
    ]
    if order == "reversed":
        events.reverse()

    outcomes = [await send(api, payload) for payload in events for _ in range(3)]

    assert outcomes.count("duplicate") == 4
    body = await stored(api, session_id)
    assert body["status"] == final_status
    actions = await audit_actions(api, session_id)
    changes = sum(count for action, count in actions.items() if action != "payment_window_opened")
    assert changes == outcomes.count("applied")
    assert body["version"] == 1 + changes
    assert all(count == 1 for count in actions.values())


async def test_completed_unpaid_waits_for_confirmation(api: Api) -> None:
    session_id, checkout_id = await opened(api)

    await send(api, stripe_event(COMPLETED, checkout_id, payment_status="unpaid"))

    body = await stored(api, session_id)
    assert (body["status"], body["remainingTime"]) == ("awaiting_payment_confirmation", 0)
    # No deadline runs any more; Stripe is asked again in an hour should no webhook come.
    index = api.container.index
    next_look = await index.next_due()
    assert next_look is not None
    assert timedelta(minutes=59) < next_look - await index.now() <= timedelta(minutes=60)


async def test_a_failed_delayed_payment_closes_the_window_and_relists(api: Api) -> None:
    session_id, checkout_id = await opened(api)
    await send(api, stripe_event(COMPLETED, checkout_id, payment_status="unpaid"))

    await send(api, stripe_event(FAILED, checkout_id, payment_status="unpaid"))

    body = await stored(api, session_id)
    assert (body["status"], body["reason"]) == ("expired", "payment_failed")
    events = Counter(row.event_type for row in await outbox_rows(api, session_id))
    assert events["auction.relist_requested"] == 1
    assert events["payments.checkout.expired"] == 1


async def test_stripe_expiring_the_current_session_closes_the_open_window_once(
    api: Api,
) -> None:
    session_id, checkout_id = await opened(api)

    outcomes = [await send(api, stripe_event(EXPIRED, checkout_id)) for _ in range(3)]

    assert outcomes == ["applied", "unchanged", "unchanged"]  # three distinct event ids
    body = await stored(api, session_id)
    assert (body["status"], body["reason"]) == ("expired", "stripe_expired")
    assert (await audit_actions(api, session_id))["payment_expired"] == 1
    assert session_id not in await api.container.index.scheduled_ids()


# --- the last instant ------------------------------------------------------------------------


async def test_a_payment_after_expiry_is_recorded_cancels_the_relist_and_alerts_operations(
    api: Api,
) -> None:
    session_id, checkout_id = await opened(api)
    await send(api, stripe_event(EXPIRED, checkout_id))
    relist = [r for r in await outbox_rows(api, session_id) if r.destination == "auction"]
    assert [r.event_type for r in relist] == ["auction.relist_requested"]

    outcomes = [await send(api, stripe_event(COMPLETED, checkout_id)) for _ in range(3)]

    assert outcomes == ["applied", "unchanged", "unchanged"]
    body = await stored(api, session_id)
    assert (body["status"], body["version"]) == ("paid", 3)
    rows = {row.event_type: row for row in await outbox_rows(api, session_id)}
    assert rows["auction.relist_requested"].cancelled_at is not None
    assert rows["auction.payment_received"].cancelled_at is None
    alert = rows["operations.late_payment_after_expiry"]
    assert alert.destination == "operations"
    assert alert.payload["followUpsCancelled"] == 1
    assert alert.payload["closedReason"] == "stripe_expired"
    actions = await audit_actions(api, session_id)
    assert actions == Counter(
        {"payment_window_opened": 1, "payment_expired": 1, "payment_completed": 1}
    )


# --- rotation --------------------------------------------------------------------------------


async def test_events_for_a_rotated_away_session_find_their_window(
    api: Api, stripe: RunningStripe
) -> None:
    body = await api.open_window(windowMinutes=60)
    session_id = body["sessionId"]
    async with api.container.uow() as uow:
        first = await uow.sessions.get(session_id)
    assert first is not None and first.checkout_session_id
    response = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 30},
        headers=api.admin,
    )
    assert response.status_code == 200, response.text
    async with api.container.uow() as uow:
        rotated = await uow.sessions.get(session_id)
    assert rotated is not None and rotated.checkout_session_id != first.checkout_session_id
    assert rotated.checkout_session_id

    # The rotation expired the old session at Stripe, which says so: the window stays open.
    assert await send(api, stripe_event(EXPIRED, first.checkout_session_id)) == "unchanged"
    assert (await stored(api, session_id))["status"] == "open"

    # The buyer had paid on the old link just before: that is a payment.
    stripe.reset_calls()
    assert await send(api, stripe_event(COMPLETED, first.checkout_session_id)) == "applied"

    assert (await stored(api, session_id))["status"] == "paid"
    # The handler answered without calling Stripe; the worker expires the current link.
    assert stripe.calls() == 0
    assert stripe.session(rotated.checkout_session_id)["status"] == "open"
    report = await api.container.expiry_task().run_pass()
    assert report.expired_other == 1
    assert stripe.session(rotated.checkout_session_id)["status"] == "expired"
    async with api.container.uow() as uow:
        settled = await uow.sessions.get(session_id)
    assert settled is not None and settled.expire_checkout_id is None
    assert not settled.is_scheduled
