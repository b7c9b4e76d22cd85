"""The webhook endpoint as Stripe's several endpoints reach it: more than one signing secret (a
Connect endpoint, a secret roll), events on connected accounts, thin (v2) notifications, and
events from the other mode; and the handler answers before any Stripe call."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_harness import Api, api_settings, running_api
from devstripe.events import signature_header
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from test_attach_checkout import made_elsewhere

from payment_window.config import Settings

OLD_SECRET = "whsec_old_0123456789abcdef"
NEW_SECRET = "whsec_new_fedcba9876543210"
CONNECT_SECRET = "whsec_connect_00112233445566"
MAKER_ACCOUNT = "acct_1MakerHooks"
URL = "/payments/stripe/webhook"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    secrets = f"{OLD_SECRET}, {NEW_SECRET},{CONNECT_SECRET}"
    settings = api_settings(pg_settings, stripe, stripe_webhook_secret=SecretStr(secrets))
    async with running_api(settings) as running:
        yield running


def completed(checkout_id: str, *, account: str | None = None, livemode: bool = False) -> bytes:
    event: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": livemode,
        "data": {
            "object": {
                "id": checkout_id,
                "object": "checkout.session",
                "status": "complete",
                "payment_status": "paid",
                "expires_at": int(time.time()) + 3600,
                "url": None,
            }
        },
    }
    if account is not None:
        event["account"] = account
    return json.dumps(event).encode()


async def deliver(api: Api, payload: bytes, secret: str) -> Any:
    return await api.client.post(
        URL,
        content=payload,
        headers={
            "Stripe-Signature": signature_header(payload, secret),
            "Content-Type": "application/json",
        },
    )


async def status_of(api: Api, session_id: str) -> str:
    response = await api.client.get(f"/payments/checkout/{session_id}/status", headers=api.admin)
    status: str = response.json()["status"]
    return status


async def checkout_of(api: Api, session_id: str) -> str:
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None and session.checkout_session_id
    return session.checkout_session_id


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
async def test_during_a_secret_roll_both_secrets_are_accepted(api: Api, secret: str) -> None:
    opened = await api.open_window()
    checkout_id = await checkout_of(api, opened["sessionId"])

    response = await deliver(api, completed(checkout_id), secret)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied"
    assert await status_of(api, opened["sessionId"]) == "paid"


async def test_a_secret_not_configured_is_still_refused(api: Api) -> None:
    opened = await api.open_window()
    checkout_id = await checkout_of(api, opened["sessionId"])

    response = await deliver(api, completed(checkout_id), "whsec_retired_long_ago")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_webhook"
    assert await status_of(api, opened["sessionId"]) == "open"


async def test_a_connect_event_matches_only_on_its_account(api: Api) -> None:
    opened = await api.open_window(connect={"accountId": MAKER_ACCOUNT, "charge": "direct"})
    checkout_id = await checkout_of(api, opened["sessionId"])

    without_account = await deliver(api, completed(checkout_id), NEW_SECRET)
    other_account = await deliver(
        api, completed(checkout_id, account="acct_1NotTheMaker"), CONNECT_SECRET
    )
    assert [without_account.json()["outcome"], other_account.json()["outcome"]] == [
        "unknown_session",
        "unknown_session",
    ]
    assert await status_of(api, opened["sessionId"]) == "open"

    right = await deliver(api, completed(checkout_id, account=MAKER_ACCOUNT), CONNECT_SECRET)

    assert right.status_code == 200 and right.json()["outcome"] == "applied"
    assert await status_of(api, opened["sessionId"]) == "paid"


async def test_a_thin_event_notification_is_acknowledged_and_ignored(
    api: Api, stripe: RunningStripe
) -> None:
    opened = await api.open_window()
    thin = json.dumps(
        {
            "id": "evt_test_65R9Ijk8M9lnvGDe2Sc16R9Ijk8MqjbHRuKBmUcs2rI",
            "object": "v2.core.event",
            "type": "v1.billing.meter.no_meter_found",
            "livemode": False,
            "created": "2024-09-17T06:20:52.246Z",
            "related_object": {
                "id": "mtr_test_61R9Ijk8M9lnvGDe241IR9Ijk8MqjbHR",
                "type": "billing.meter",
                "url": "/v1/billing/meters/mtr_test_61R9Ijk8M9lnvGDe241IR9Ijk8MqjbHR",
            },
        }
    ).encode()
    stripe.reset_calls()

    response = await deliver(api, thin, NEW_SECRET)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "ignored"
    assert await status_of(api, opened["sessionId"]) == "open"
    assert stripe.calls() == 0


async def test_an_event_from_live_mode_is_ignored_by_a_test_mode_service(api: Api) -> None:
    opened = await api.open_window()
    checkout_id = await checkout_of(api, opened["sessionId"])

    response = await deliver(api, completed(checkout_id, livemode=True), NEW_SECRET)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "ignored"
    assert await status_of(api, opened["sessionId"]) == "open"


async def test_a_connect_event_pays_a_window_attached_to_a_session_on_that_account(
    api: Api, stripe: RunningStripe
) -> None:
    checkout = await made_elsewhere(stripe, account=MAKER_ACCOUNT)
    response = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": "auc-attached-hook",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "checkoutSessionId": checkout["id"],
            "windowMinutes": 30,
            "connect": {"accountId": MAKER_ACCOUNT, "charge": "direct"},
        },
        headers=api.auth("service", "marketplace"),
    )
    assert response.status_code == 201, response.text

    paid = await deliver(api, completed(checkout["id"], account=MAKER_ACCOUNT), CONNECT_SECRET)

    assert paid.json()["outcome"] == "applied"
    assert await status_of(api, response.json()["sessionId"]) == "paid"
