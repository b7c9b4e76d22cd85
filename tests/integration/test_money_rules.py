"""Money rules Stripe enforces, refused before any Stripe call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe

from payment_window.config import Settings


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


@pytest.mark.parametrize("currency", ["bhd", "JOD", "kwd", "omr", "tnd"])
async def test_a_three_decimal_amount_not_ending_in_0_is_422_saying_why(
    api: Api, stripe: RunningStripe, currency: str
) -> None:
    response = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": f"auc-3dp-{currency}",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 12_345,
            "currency": currency,
        },
        headers=api.auth("service", "marketplace"),
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert "must end in 0" in error["message"] and "12340" in error["message"]
    assert stripe.calls() == 0
    assert (await api.counts())["payment_sessions"] == 0


async def test_a_three_decimal_amount_ending_in_0_opens(api: Api, stripe: RunningStripe) -> None:
    opened = await api.open_window(amount=12_340, currency="bhd")

    assert (opened["amount"], opened["currency"]) == (12_340, "bhd")
    assert stripe.calls("/v1/checkout/sessions", method="POST") == 1
