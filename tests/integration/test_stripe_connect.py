"""Stripe Connect through the API and the real worker, against the local Stripe over HTTP:
destination charges on the platform, direct charges on the maker's account (every later call
names it), and webhooks from a Connect endpoint under its own secret."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.events import signature_header
from devstripe.testing import RunningStripe
from httpcapture import CaptureServer
from moments import until_next_due
from pydantic import SecretStr
from sqlalchemy import select

from payment_window.adapters.tables import outbox
from payment_window.config import Settings

MAKER_ACCOUNT = "acct_1MakerDirect"
OTHER_ACCOUNT = "acct_1SomeoneElse"
PLATFORM_SECRET = "whsec_platform_0123456789"
CONNECT_SECRET = "whsec_connect_9876543210"
URL = "/payments/stripe/webhook"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(
        pg_settings,
        stripe,
        stripe_webhook_secret=SecretStr(f"{PLATFORM_SECRET},{CONNECT_SECRET}"),
        stripe_expire_rps=1000.0,
        # A pending payment is asked about again almost at once.
        confirmation_recheck_minutes=0.001,
    )
    async with running_api(settings) as running:
        yield running


async def window_row(api: Api, session_id: str) -> Any:
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None
    return session


async def stripe_get(
    stripe: RunningStripe, checkout_id: str, account: str | None
) -> httpx.Response:
    """A retrieve as another Stripe client would make it, on `account` (None: the platform)."""
    headers = {"Authorization": "Bearer sk_test_other"}
    if account:
        headers["Stripe-Account"] = account
    async with httpx.AsyncClient(base_url=stripe.url) as client:
        return await client.get(f"/v1/checkout/sessions/{checkout_id}", headers=headers)


# --- destination charges -----------------------------------------------------------------------


async def test_a_destination_charge_is_made_on_the_platform_with_transfer_fee_and_on_behalf_of(
    api: Api, stripe: RunningStripe
) -> None:
    body = await api.open_window(
        amount=20_000,
        connect={
            "accountId": MAKER_ACCOUNT,
            "charge": "destination",
            "applicationFeeAmount": 1_500,
            "onBehalfOf": True,
        },
    )

    session = await window_row(api, body["sessionId"])
    checkout_id = session.checkout_session_id
    assert stripe.account_of(checkout_id) is None  # the platform's session
    assert stripe.created_with(checkout_id)["payment_intent_data"] == {
        "application_fee_amount": "1500",
        "transfer_data": {"destination": MAKER_ACCOUNT},
        "on_behalf_of": MAKER_ACCOUNT,
    }
    assert [call[2] for call in stripe.requests("/v1/checkout/sessions")] == [None]
    # The paid PaymentIntent carries the Connect terms.
    paid = stripe.complete(checkout_id)
    intent = stripe.app.store.payment_intent(paid["payment_intent"])
    assert intent["transfer_data"] == {"destination": MAKER_ACCOUNT}
    assert intent["application_fee_amount"] == 1_500
    # Operations see the account.
    listing = await api.client.get("/payments/windows", headers=api.admin)
    assert listing.status_code == 200, listing.text
    item = next(i for i in listing.json()["items"] if i["sessionId"] == body["sessionId"])
    assert item["stripeAccount"] == MAKER_ACCOUNT and item["charge"] == "destination"


@pytest.mark.parametrize(
    ("connect", "field"),
    [
        ({"accountId": "acc_123", "charge": "direct"}, "connect.accountId"),
        ({"accountId": "cus_123", "charge": "destination"}, "connect.accountId"),
        ({"accountId": MAKER_ACCOUNT, "charge": "separate"}, "connect.charge"),
        ({"accountId": MAKER_ACCOUNT, "charge": "direct", "bogus": 1}, "connect.bogus"),
    ],
)
async def test_a_malformed_connect_is_422_and_makes_nothing(
    api: Api, stripe: RunningStripe, connect: dict[str, Any], field: str
) -> None:
    response = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": "auc-bad-connect",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 5_000,
            "currency": "usd",
            "connect": connect,
        },
        headers=api.auth("service", "marketplace"),
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert any(f["field"] == field for f in error["fields"]), error
    assert stripe.calls() == 0


@pytest.mark.parametrize(
    ("connect", "words"),
    [
        ({"charge": "direct", "onBehalfOf": True}, "destination charges only"),
        ({"charge": "destination", "applicationFeeAmount": 5_001}, "applicationFeeAmount"),
    ],
)
async def test_connect_terms_stripe_would_refuse_are_422(
    api: Api, stripe: RunningStripe, connect: dict[str, Any], words: str
) -> None:
    response = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": "auc-bad-terms",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 5_000,
            "currency": "usd",
            "connect": {"accountId": MAKER_ACCOUNT, **connect},
        },
        headers=api.auth("service", "marketplace"),
    )

    assert response.status_code == 422, response.text
    assert words in assert_error_shape(response)["message"]
    assert stripe.calls() == 0


# --- direct charges ----------------------------------------------------------------------------


async def test_a_direct_charge_lives_on_the_connected_account_and_every_call_names_it(
    api: Api, stripe: RunningStripe
) -> None:
    body = await api.open_window(
        windowMinutes=60,
        connect={"accountId": MAKER_ACCOUNT, "charge": "direct", "applicationFeeAmount": 700},
    )
    session_id = body["sessionId"]
    first = (await window_row(api, session_id)).checkout_session_id
    assert stripe.account_of(first) == MAKER_ACCOUNT
    assert "transfer_data" not in stripe.created_with(first)["payment_intent_data"]
    # Scoped to its account, as at Stripe: invisible from the platform and from anyone else.
    for account, status in ((None, 404), (OTHER_ACCOUNT, 404), (MAKER_ACCOUNT, 200)):
        found = await stripe_get(stripe, first, account)
        assert found.status_code == status, (account, found.text)
        if status == 404:
            assert found.json()["error"]["code"] == "resource_missing"

    assert stripe.requests()[0] == ("POST", "/v1/checkout/sessions", MAKER_ACCOUNT)
    stripe.reset_calls()

    # An extension past the session: the replacement is made on the same account.
    extended = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 30},
        headers=api.admin,
    )
    assert extended.status_code == 200, extended.text
    second = (await window_row(api, session_id)).checkout_session_id
    assert second != first
    assert stripe.account_of(second) == MAKER_ACCOUNT
    assert stripe.session(first)["status"] == "expired"
    assert body["checkoutUrl"] != extended.json()["checkoutUrl"]

    # Terminated: expired at Stripe on the maker's account.
    terminated = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "terminate", "reason": "maker withdrew"},
        headers=api.admin,
    )
    assert terminated.status_code == 200, terminated.text
    assert terminated.json()["status"] == "expired"
    assert stripe.session(second)["status"] == "expired"

    assert stripe.requests() == [
        ("POST", "/v1/checkout/sessions", MAKER_ACCOUNT),
        ("POST", f"/v1/checkout/sessions/{first}/expire", MAKER_ACCOUNT),
        ("POST", f"/v1/checkout/sessions/{second}/expire", MAKER_ACCOUNT),
    ]

    # Operations and the CLI's table name the account.
    listing = await api.client.get("/payments/windows", headers=api.admin)
    item = next(i for i in listing.json()["items"] if i["sessionId"] == session_id)
    assert (item["stripeAccount"], item["charge"]) == (MAKER_ACCOUNT, "direct")


async def test_the_worker_expires_a_direct_charge_window_on_its_account(
    api: Api, stripe: RunningStripe
) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=2)
    body = await api.open_window(
        expiresAt=ends.isoformat(), connect={"accountId": MAKER_ACCOUNT, "charge": "direct"}
    )
    checkout_id = (await window_row(api, body["sessionId"])).checkout_session_id
    stripe.reset_calls()
    await until_next_due(api.container.index)  # the deadline

    report = await api.container.expiry_task().run_pass()

    assert report.expired == 1
    closed = await window_row(api, body["sessionId"])
    assert closed.status.value == "expired" and closed.reason == "window_elapsed"
    assert stripe.session(checkout_id)["status"] == "expired"
    assert stripe.requests() == [
        ("POST", f"/v1/checkout/sessions/{checkout_id}/expire", MAKER_ACCOUNT)
    ]
    # Every message about the window names the maker's account.
    async with api.container.engine.connect() as connection:
        rows = list(
            await connection.execute(
                select(outbox.c.event_type, outbox.c.payload).where(
                    outbox.c.session_id == body["sessionId"]
                )
            )
        )
    assert {row.event_type for row in rows} >= {
        "payment_window.expired",
        "auction.relist_requested",
    }
    assert all(row.payload["stripeAccount"] == MAKER_ACCOUNT for row in rows), rows
    assert all(row.payload["charge"] == "direct" for row in rows)


async def test_a_pending_direct_payment_is_rechecked_on_its_account(
    api: Api, stripe: RunningStripe
) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=2)
    body = await api.open_window(
        expiresAt=ends.isoformat(), connect={"accountId": MAKER_ACCOUNT, "charge": "direct"}
    )
    checkout_id = (await window_row(api, body["sessionId"])).checkout_session_id
    stripe.complete(checkout_id, paid=False)  # a bank debit, still processing
    stripe.reset_calls()
    await until_next_due(api.container.index)  # the deadline

    # At the deadline Stripe refuses to expire a complete session: the buyer paid (pending).
    await api.container.expiry_task().run_pass()
    pending = await window_row(api, body["sessionId"])
    assert pending.status.value == "awaiting_payment_confirmation"
    stripe.app.store.settle_delayed_payment(checkout_id, succeeded=True)
    await until_next_due(api.container.index)  # the re-check

    report = await api.container.expiry_task().run_pass()

    assert report.rechecked == 1
    assert (await window_row(api, body["sessionId"])).status.value == "paid"
    expire, *retrieves = stripe.requests()
    assert expire == ("POST", f"/v1/checkout/sessions/{checkout_id}/expire", MAKER_ACCOUNT)
    # The expire's refusal, then each re-check: retrieves on the maker's account.
    assert len(retrieves) >= 2
    assert set(retrieves) == {("GET", f"/v1/checkout/sessions/{checkout_id}", MAKER_ACCOUNT)}


# --- Connect webhooks --------------------------------------------------------------------------


async def test_a_connect_event_signed_with_the_connect_secret_pays_the_direct_window(
    api: Api, pg_settings: Settings
) -> None:
    with (
        CaptureServer() as platform_endpoint,
        CaptureServer() as connect_endpoint,
        RunningStripe(
            webhook_url=platform_endpoint.url,
            webhook_secret=PLATFORM_SECRET,
            connect_webhook_url=connect_endpoint.url,
            connect_webhook_secret=CONNECT_SECRET,
        ) as own_stripe,
    ):
        settings = api_settings(
            pg_settings,
            own_stripe,
            stripe_webhook_secret=SecretStr(f"{PLATFORM_SECRET},{CONNECT_SECRET}"),
        )
        async with running_api(settings) as own:
            body = await own.open_window(connect={"accountId": MAKER_ACCOUNT, "charge": "direct"})
            checkout_id = (await window_row(own, body["sessionId"])).checkout_session_id
            async with httpx.AsyncClient(base_url=own_stripe.url) as client:
                done = await client.post(f"/_test/checkout/sessions/{checkout_id}/complete")
                assert done.status_code == 200, done.text
            delivered = await _wait_for(connect_endpoint)

            # Stripe's Connect endpoint got it, naming the account; the platform's got nothing.
            assert platform_endpoint.requests == []
            event = delivered.json()
            assert event["account"] == MAKER_ACCOUNT
            assert event["data"]["object"]["id"] == checkout_id
            # Only the Connect secret signs it; the service holds both.
            answer = await own.client.post(
                URL,
                content=delivered.body,
                headers={
                    "Stripe-Signature": delivered.headers["Stripe-Signature"],
                    "Content-Type": "application/json",
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["outcome"] == "applied"
            assert (await window_row(own, body["sessionId"])).status.value == "paid"


async def _wait_for(endpoint: CaptureServer, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while not endpoint.requests:
        assert time.monotonic() < deadline, "no webhook arrived"
        await asyncio.sleep(0.02)
    return endpoint.requests[0]


async def test_paid_on_an_old_link_the_worker_expires_the_current_one_on_the_account_with_retries(
    api: Api, stripe: RunningStripe
) -> None:
    body = await api.open_window(
        windowMinutes=60, connect={"accountId": MAKER_ACCOUNT, "charge": "direct"}
    )
    session_id = body["sessionId"]
    first = (await window_row(api, session_id)).checkout_session_id
    extended = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 30},
        headers=api.admin,
    )
    assert extended.status_code == 200, extended.text
    current = (await window_row(api, session_id)).checkout_session_id
    # The buyer paid on the old link in the instant before the rotation expired it.
    stripe.app.store._sessions[first].update(status="complete", payment_status="paid")
    payload = json.dumps(
        {
            "id": "evt_paid_on_old_link",
            "object": "event",
            "type": "checkout.session.completed",
            "account": MAKER_ACCOUNT,
            "livemode": False,
            "created": int(time.time()),
            "data": {"object": stripe.session(first)},
        }
    ).encode()
    stripe.reset_calls()

    answer = await api.client.post(
        URL,
        content=payload,
        headers={"Stripe-Signature": signature_header(payload, CONNECT_SECRET)},
    )

    assert answer.status_code == 200 and answer.json()["outcome"] == "applied"
    assert stripe.calls() == 0  # answered before any Stripe call
    assert stripe.session(current)["status"] == "open"

    # Stripe fails the first try: retried with the expiry backoff, as any expiry.
    stripe.fail_next(1, path="/expire")
    failed = await api.container.expiry_task().run_pass()
    assert failed.retried == 1 and failed.expired_other == 0
    row = await window_row(api, session_id)
    assert row.expire_checkout_id == current and row.expiry_attempts == 1
    assert stripe.session(current)["status"] == "open"
    await until_next_due(api.container.index)  # the retry, after its backoff

    retried = await api.container.expiry_task().run_pass()

    assert retried.expired_other == 1
    assert stripe.session(current)["status"] == "expired"
    assert (await window_row(api, session_id)).expire_checkout_id is None
    assert (await window_row(api, session_id)).status.value == "paid"
    assert {call[2] for call in stripe.requests()} == {MAKER_ACCOUNT}
