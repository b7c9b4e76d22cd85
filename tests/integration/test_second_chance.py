"""`onExpiry: offer_next_bidder`: a window closing unpaid asks the auction service for a
second-chance offer instead of a relist, once, and a late payment cancels the request.

State is reached as users reach it: the admin sets the policy and the marketplace opens the
window through the API, the real clock passes the deadline, the expiry pass closes it at the
local Stripe, the relay delivers to SNS (moto) and Stripe's signed webhook brings a late payment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from motoserver import MotoServer, TopicTap
from pydantic import SecretStr
from test_stripe_webhooks import COMPLETED, SECRET, outbox_rows, send, stripe_event

from payment_window.adapters.metrics import NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.sinks import create_sinks
from payment_window.config import Settings
from payment_window.outbox import OutboxRelay

MAKER = "maker-second-chance"
POLICY = {"maxExtensionMinutes": 60, "makersMayOverride": False, "onExpiry": "offer_next_bidder"}


@pytest.fixture
async def wired(
    pg_settings: Settings, stripe: RunningStripe, moto: MotoServer
) -> AsyncIterator[tuple[Api, TopicTap]]:
    auction = TopicTap.create(moto, "auction-events")
    settings = api_settings(
        pg_settings,
        stripe,
        stripe_webhook_secret=SecretStr(SECRET),
        reminder_offsets_minutes=[],
        aws_endpoint_url=moto.url,
        auction_events_topic_arn=auction.topic_arn,
    )
    async with running_api(settings) as api:
        put = await api.client.put(f"/makers/{MAKER}/policy", json=POLICY, headers=api.admin)
        assert put.status_code == 200 and put.json() == POLICY, put.text
        yield api, auction


async def open_window(api: Api, seconds: float) -> dict[str, Any]:
    ends = datetime.now(UTC) + timedelta(seconds=seconds)
    return await api.open_window(
        makerId=MAKER, buyerId="buyer-unpaid", expiresAt=ends.isoformat().replace("+00:00", "Z")
    )


async def deliver(api: Api, tap: TopicTap, moto: MotoServer) -> list[dict[str, Any]]:
    relay = OutboxRelay(
        SqlOutboxStore(api.container.engine),
        create_sinks(api.container.settings),
        NullMetrics(),
        api.container.clock,
    )
    await relay.run_once()
    return [json.loads(note["Message"]) for note in tap.drain(moto)]


async def test_an_unpaid_window_asks_for_a_second_chance_offer_once_instead_of_a_relist(
    wired: tuple[Api, TopicTap], moto: MotoServer
) -> None:
    api, tap = wired
    opened = await open_window(api, seconds=1.5)

    for _ in range(100):  # the worker's passes, until the real deadline has passed
        await api.container.expiry_task().run_pass()
        status = await api.client.get(
            f"/payments/checkout/{opened['sessionId']}/status", headers=api.admin
        )
        if status.json()["status"] != "open":
            break
        await asyncio.sleep(0.1)
    assert status.json()["status"] == "expired"
    delivered = await deliver(api, tap, moto)
    await api.container.expiry_task().run_pass()  # a later pass sends nothing more
    delivered += await deliver(api, tap, moto)

    assert [body["event"] for body in delivered] == ["auction.second_chance_requested"]
    [offer] = delivered
    assert {key: offer[key] for key in offer if key not in ("eventId", "occurredAt")} == {
        "event": "auction.second_chance_requested",
        "auctionId": opened["auctionId"],
        "sessionId": opened["sessionId"],
        "makerId": MAKER,
        "buyerId": "buyer-unpaid",
        "amount": 12_500,
        "currency": "usd",
        "reason": "window_elapsed",
        "closedAt": offer["closedAt"],
    }
    assert offer["closedAt"] >= opened["expiresAt"]


async def test_a_late_payment_cancels_the_second_chance_offer_before_it_leaves(
    wired: tuple[Api, TopicTap], moto: MotoServer
) -> None:
    api, tap = wired
    opened = await open_window(api, seconds=3600)
    terminated = await api.client.post(
        f"/payments/window/{opened['sessionId']}/override",
        json={"action": "terminate"},
        headers=api.admin,
    )
    assert terminated.status_code == 200, terminated.text
    checkout = await _checkout_of(api, opened["sessionId"])

    # Stripe completed the session in the instant the admin closed it: the money wins.
    assert await send(api, stripe_event(COMPLETED, checkout)) == "applied"

    rows = {row.event_type: row for row in await outbox_rows(api, opened["sessionId"])}
    assert rows["auction.second_chance_requested"].cancelled_at is not None
    assert rows["operations.late_payment_after_expiry"].payload["followUpsCancelled"] == 1
    events = [body["event"] for body in await deliver(api, tap, moto)]
    assert "auction.second_chance_requested" not in events
    assert "auction.payment_received" in events


async def _checkout_of(api: Api, session_id: str) -> str:
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None and session.checkout_session_id is not None
    return session.checkout_session_id
