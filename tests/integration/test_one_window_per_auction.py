"""One payable window per auction: a second is refused with the first's id, even in a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from test_stripe_webhooks import COMPLETED, SECRET, signature, stripe_event

from payment_window.config import Settings

CREATE = "/v1/checkout/sessions"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(pg_settings, stripe, stripe_webhook_secret=SecretStr(SECRET))
    async with running_api(settings) as running:
        yield running


def _body(auction_id: str) -> dict[str, Any]:
    return {
        "auctionId": auction_id,
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "amount": 12_500,
        "currency": "usd",
    }


async def _open(api: Api, auction_id: str) -> Any:
    return await api.client.post(
        "/payments/checkout", json=_body(auction_id), headers=api.auth("service", "marketplace")
    )


async def _pay(api: Api, session_id: str) -> None:
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None and session.checkout_session_id
    payload = stripe_event(COMPLETED, session.checkout_session_id)
    response = await api.client.post(
        "/payments/stripe/webhook",
        content=payload.encode(),
        headers={"Stripe-Signature": signature(payload), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_a_second_window_for_an_open_auction_names_the_open_one(
    api: Api, stripe: RunningStripe
) -> None:
    first = await _open(api, "auc-twice")
    assert first.status_code == 201, first.text
    creates = stripe.calls(CREATE, "POST")
    before = await api.counts()

    second = await _open(api, "auc-twice")

    assert second.status_code == 409, second.text
    error = assert_error_shape(second)
    assert error["code"] == "window_already_open"
    assert error["sessionId"] == first.json()["sessionId"]
    assert stripe.calls(CREATE, "POST") == creates  # no second Checkout Session
    assert await api.counts() == before


async def test_a_paid_auction_gets_no_second_window(api: Api, stripe: RunningStripe) -> None:
    first = await _open(api, "auc-paid")
    assert first.status_code == 201, first.text
    await _pay(api, first.json()["sessionId"])
    creates = stripe.calls(CREATE, "POST")

    second = await _open(api, "auc-paid")

    assert second.status_code == 409, second.text
    error = assert_error_shape(second)
    assert error["code"] == "auction_already_paid"
    assert error["sessionId"] == first.json()["sessionId"]
    assert stripe.calls(CREATE, "POST") == creates


async def test_a_window_that_expired_unpaid_may_be_followed_by_another(api: Api) -> None:
    first = await _open(api, "auc-again")
    session_id = first.json()["sessionId"]
    terminated = await api.client.post(
        f"/payments/window/{session_id}/override", json={"action": "terminate"}, headers=api.admin
    )
    assert terminated.status_code == 200, terminated.text

    assert (await _open(api, "auc-again")).status_code == 201


async def test_two_racing_opens_give_one_window_and_a_409_naming_it(
    api: Api, stripe: RunningStripe
) -> None:
    # Both requests pass the service's look at the store while Stripe answers slowly, so the
    # store's unique index is what decides.
    stripe.delay_next(0.5, n=2, path=CREATE)

    answers = await asyncio.gather(_open(api, "auc-race"), _open(api, "auc-race"))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 409], [answer.text for answer in answers]
    won = next(answer for answer in answers if answer.status_code == 201)
    lost = next(answer for answer in answers if answer.status_code == 409)
    error = assert_error_shape(lost)
    assert error["code"] == "window_already_open"
    assert error["sessionId"] == won.json()["sessionId"]
    # The loser's Checkout Session was closed at Stripe, so nobody can pay through it.
    assert stripe.calls("/expire", "POST") == 1
    assert (await api.counts())["payment_sessions"] == 1
