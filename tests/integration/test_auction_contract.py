"""The auction follow-up contract (docs/events.md) on moto's SNS → SQS, as the auction service
would receive it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe
from motoserver import MotoServer, TopicTap
from seeding import seed_windows

from payment_window.adapters.metrics import NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.sinks import create_sinks
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.outbox import OutboxRelay


@pytest.fixture
async def wired(
    pg_settings: Settings, stripe: RunningStripe, moto: MotoServer
) -> AsyncIterator[tuple[Container, TopicTap]]:
    auction = TopicTap.create(moto, "auction-events")
    settings = with_stripe(pg_settings, stripe).model_copy(
        update={"aws_endpoint_url": moto.url, "auction_events_topic_arn": auction.topic_arn}
    )
    container = await bootstrap(settings)
    yield container, auction
    await container.close()


async def relay_and_read(container: Container, tap: TopicTap, moto: MotoServer) -> list[Any]:
    relay = OutboxRelay(
        SqlOutboxStore(container.engine),
        create_sinks(container.settings),
        NullMetrics(),
        container.clock,
    )
    await relay.run_once()
    return tap.drain(moto)


async def test_an_expiry_asks_the_auction_service_to_relist(
    wired: tuple[Container, TopicTap], stripe: RunningStripe, moto: MotoServer
) -> None:
    container, tap = wired
    [session] = await seed_windows(container, stripe, 1)

    await container.expiry_task().run_pass()
    [note] = await relay_and_read(container, tap, moto)

    body = json.loads(note["Message"])
    assert set(body) == {
        "eventId",
        "event",
        "occurredAt",
        "auctionId",
        "sessionId",
        "makerId",
        "buyerId",
        "reason",
        "closedAt",
    }
    assert body["event"] == "auction.relist_requested"
    assert (body["auctionId"], body["sessionId"]) == (session.auction_id, session.id)
    assert (body["makerId"], body["buyerId"]) == (session.maker_id, session.buyer_id)
    assert body["reason"] == "window_elapsed"
    assert body["occurredAt"].endswith("Z") and body["closedAt"].endswith("Z")
    attributes = {name: value["Value"] for name, value in note["MessageAttributes"].items()}
    assert attributes == {
        "event": "auction.relist_requested",
        "eventId": body["eventId"],
        "sessionId": session.id,
        "auctionId": session.auction_id,
    }


async def test_a_payment_tells_the_auction_service_it_was_paid(
    wired: tuple[Container, TopicTap], stripe: RunningStripe, moto: MotoServer
) -> None:
    container, tap = wired
    [session] = await seed_windows(container, stripe, 1)
    assert session.checkout_session_id
    stripe.complete(session.checkout_session_id)  # the buyer paid just before the deadline

    await container.expiry_task().run_pass()
    [note] = await relay_and_read(container, tap, moto)

    body = json.loads(note["Message"])
    assert body["event"] == "auction.payment_received"
    assert set(body) == {
        "eventId",
        "event",
        "occurredAt",
        "auctionId",
        "sessionId",
        "buyerId",
        "amount",
        "currency",
        "paidAt",
    }
    assert (body["auctionId"], body["amount"], body["currency"]) == (
        session.auction_id,
        session.amount,
        session.currency,
    )
