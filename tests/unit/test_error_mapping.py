"""Domain refusals about money and Stripe become the one error shape with their status."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from payment_window.api.errors import install_error_handlers
from payment_window.domain.errors import AmountTooSmall, CheckoutRefused
from payment_window.domain.money import check_minimum


async def _answer_to(error: Exception) -> httpx.Response:
    """What a route that raises `error` answers, through the real error handlers."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    def fail() -> None:
        raise error

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/")


def _too_small() -> AmountTooSmall:
    try:
        check_minimum(49, "EUR")
    except AmountTooSmall as error:
        return error
    raise AssertionError("49 EUR cents is below Stripe's minimum")


async def test_amount_too_small_is_422_naming_the_minimum() -> None:
    response = await _answer_to(_too_small())

    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "amount_too_small",
            "message": "the minimum charge in EUR is 0.50",
            "minimumAmount": 50,
        }
    }


async def test_a_stripe_refusal_is_422_with_stripes_code_and_message() -> None:
    refused = CheckoutRefused("parameter_invalid_integer", "Invalid integer: abc")

    response = await _answer_to(refused)

    assert response.status_code == 422
    assert response.json() == {
        "error": {"code": "parameter_invalid_integer", "message": "Invalid integer: abc"}
    }


async def test_a_stripe_refusal_without_a_code_keeps_ours() -> None:
    response = await _answer_to(CheckoutRefused(None, "The `expires_at` timestamp ..."))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "checkout_refused"
