"""Windows on Checkout Sessions the marketplace's own integration made (attach), on the
platform and on a connected account, through the API and the real worker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from moments import until_next_due

from payment_window.config import Settings

MAKER_ACCOUNT = "acct_1MakerAttach"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


async def made_elsewhere(
    stripe: RunningStripe,
    *,
    account: str | None = None,
    minutes: int = 60,
    amount: int = 4_200,
    currency: str = "eur",
    recovery: bool = False,
) -> dict[str, Any]:
    """A Checkout Session the marketplace's own integration makes, straight at Stripe."""
    form = {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": currency,
        "line_items[0][price_data][unit_amount]": str(amount),
        "line_items[0][price_data][product_data][name]": "Lot 7",
        "expires_at": str(int(time.time()) + minutes * 60),
        "success_url": "https://market.example/paid",
    }
    if recovery:
        form["after_expiration[recovery][enabled]"] = "true"
    headers = {"Authorization": "Bearer sk_test_marketplace"}
    if account:
        headers["Stripe-Account"] = account
    async with httpx.AsyncClient(base_url=stripe.url) as client:
        response = await client.post("/v1/checkout/sessions", data=form, headers=headers)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def attach(api: Api, checkout_id: str, **fields: Any) -> httpx.Response:
    headers = {**api.auth("service", "marketplace"), **fields.pop("headers", {})}
    body = {
        "auctionId": fields.pop("auctionId", f"auc-attach-{checkout_id[-8:]}"),
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "checkoutSessionId": checkout_id,
        "windowMinutes": 30,
        **fields,
    }
    return await api.client.post("/payments/checkout", json=body, headers=headers)


async def test_a_window_on_our_own_session_takes_its_amount_and_link_and_makes_none(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, amount=4_200, currency="eur")
    stripe.reset_calls()

    response = await attach(api, checkout["id"])

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["amount"], body["currency"]) == (4_200, "eur")
    assert body["checkoutUrl"] == checkout["url"]
    assert stripe.requests() == [("GET", f"/v1/checkout/sessions/{checkout['id']}", None)]
    audit = await api.client.get(f"/payments/checkout/{body['sessionId']}/audit", headers=api.admin)
    opened = audit.json()[0]
    assert opened["action"] == "payment_window_opened"
    assert opened["details"]["attached"] is True


async def test_an_attached_window_on_a_connected_account_is_expired_there_by_the_worker(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, account=MAKER_ACCOUNT)
    ends = datetime.now(UTC) + timedelta(seconds=2)

    response = await attach(
        api,
        checkout["id"],
        windowMinutes=None,
        expiresAt=ends.isoformat(),
        connect={"accountId": MAKER_ACCOUNT, "charge": "direct"},
    )
    assert response.status_code == 201, response.text
    stripe.reset_calls()
    await until_next_due(api.container.index)  # the deadline

    report = await api.container.expiry_task().run_pass()

    assert report.expired == 1
    assert stripe.session(checkout["id"])["status"] == "expired"
    assert stripe.requests() == [
        ("POST", f"/v1/checkout/sessions/{checkout['id']}/expire", MAKER_ACCOUNT)
    ]
    status = await api.client.get(
        f"/payments/checkout/{response.json()['sessionId']}/status", headers=api.admin
    )
    assert status.json()["status"] == "expired"


async def test_a_session_on_a_connected_account_is_not_found_from_the_platform(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, account=MAKER_ACCOUNT)

    response = await attach(api, checkout["id"])

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "checkout_not_found"
    assert "platform" in error["message"]


async def test_an_unknown_session_is_checkout_not_found(api: Api, stripe: RunningStripe) -> None:
    response = await attach(api, "cs_test_nobodymadethis")

    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "checkout_not_found"


async def test_a_session_no_longer_open_is_409(api: Api, stripe: RunningStripe) -> None:
    checkout = await made_elsewhere(stripe)
    stripe.app.store.expire(checkout["id"])

    response = await attach(api, checkout["id"])

    assert response.status_code == 409, response.text
    assert assert_error_shape(response)["code"] == "checkout_not_open"


async def test_a_window_ending_after_its_session_is_refused_naming_the_latest_end(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, minutes=40)

    response = await attach(api, checkout["id"], windowMinutes=60)

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "window_outlives_checkout"
    latest = datetime.fromtimestamp(checkout["expires_at"], UTC)
    assert error["latestEnd"] == latest.isoformat().replace("+00:00", "Z")
    assert error["latestEnd"] in error["message"]


async def test_a_session_with_recovery_enabled_is_refused(api: Api, stripe: RunningStripe) -> None:
    checkout = await made_elsewhere(stripe, recovery=True)

    response = await attach(api, checkout["id"])

    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "checkout_recovery_enabled"


async def test_an_extension_past_an_attached_session_is_refused_and_a_shorter_one_kept(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, minutes=60)
    opened = await attach(api, checkout["id"], windowMinutes=30)
    session_id = opened.json()["sessionId"]

    too_far = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 45},
        headers=api.admin,
    )
    fits = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 20},
        headers=api.admin,
    )

    assert too_far.status_code == 422, too_far.text
    assert assert_error_shape(too_far)["code"] == "window_outlives_checkout"
    assert fits.status_code == 200, fits.text
    assert fits.json()["checkoutUrl"] == checkout["url"]
    assert stripe.session(checkout["id"])["status"] == "open"
    assert stripe.calls("/v1/checkout/sessions", method="POST") == 1  # only the marketplace's


async def test_attach_keeps_idempotency_keys_and_one_window_per_auction(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe)
    other = await made_elsewhere(stripe)
    key = {"Idempotency-Key": "attach-once-1"}

    first = await attach(api, checkout["id"], auctionId="auc-attach-1", headers=key)
    again = await attach(api, checkout["id"], auctionId="auc-attach-1", headers=key)
    second = await attach(api, other["id"], auctionId="auc-attach-1")
    same_session = await attach(api, checkout["id"], auctionId="auc-attach-2")

    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.json() == first.json()
    assert second.status_code == 409
    assert assert_error_shape(second)["code"] == "window_already_open"
    assert same_session.status_code == 409
    assert assert_error_shape(same_session)["code"] == "checkout_already_attached"


@pytest.mark.parametrize(
    "extra",
    [
        {"amount": 4_200, "currency": "eur"},
        {"connect": {"accountId": MAKER_ACCOUNT, "charge": "direct", "applicationFeeAmount": 5}},
    ],
)
async def test_attach_with_terms_of_its_own_is_422(
    api: Api, stripe: RunningStripe, extra: dict[str, Any]
) -> None:
    checkout = await made_elsewhere(stripe, account=MAKER_ACCOUNT)

    response = await attach(api, checkout["id"], **extra)

    assert response.status_code == 422, response.text
    assert_error_shape(response)
