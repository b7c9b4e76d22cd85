"""Analytics through the outbox to Segment's real batch API, captured on loopback."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from httpcapture import CaptureServer
from outboxsupport import ManualClock, close_windows, outbox_rows
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.metrics import NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.segment import SegmentOptions
from payment_window.adapters.sinks import SinkOptions, create_sinks
from payment_window.adapters.store import create_engine
from payment_window.config import Settings
from payment_window.domain.events import Destination
from payment_window.outbox import OutboxRelay, status

WRITE_KEY = "wk_test_payments"
FAST = SinkOptions(segment=SegmentOptions(timeout=2.0))


@pytest.fixture
def segment() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@pytest.fixture
async def store(pg_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_settings)
    yield engine
    await engine.dispose()


def relay_for(
    settings: Settings, segment: CaptureServer, engine: AsyncEngine, clock: ManualClock
) -> OutboxRelay:
    configured = settings.model_copy(
        update={"segment_write_key": SecretStr(WRITE_KEY), "segment_host": segment.url}
    )
    sinks = create_sinks(configured, FAST)
    assert set(sinks) == {Destination.ANALYTICS}
    return OutboxRelay(SqlOutboxStore(engine), sinks, NullMetrics(), clock)


async def test_a_closed_window_is_tracked_in_segment_under_its_event_id(
    segment: CaptureServer, pg_settings: Settings, store: AsyncEngine
) -> None:
    clock = ManualClock()
    [session] = await close_windows(store, clock, 1)
    relay = relay_for(pg_settings, segment, store, clock)

    report = await relay.run_once()

    assert (report.claimed, report.delivered) == (1, 1)
    [row] = [r for r in await outbox_rows(store) if r.destination == "analytics"]
    assert row.delivered_at == clock.now()
    [request] = segment.requests
    assert request.path == "/v1/batch"
    expected = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    [event] = request.json()["batch"]
    assert event["type"] == "track"
    assert event["event"] == "payments.checkout.expired"
    assert event["messageId"] == row.id
    assert event["userId"] == session.buyer_id
    assert event["timestamp"].startswith(clock.now().strftime("%Y-%m-%dT%H:%M:%S"))
    properties = event["properties"]
    assert properties["sessionId"] == session.id
    assert properties["auctionId"] == session.auction_id
    assert properties["reason"] == "window_elapsed"
    assert properties["retryEligible"] is True
    assert (await relay.run_once()).claimed == 0
    assert len(segment.requests) == 1


async def test_analytics_wait_out_a_segment_outage_and_none_is_lost(
    segment: CaptureServer, pg_settings: Settings, store: AsyncEngine
) -> None:
    clock = ManualClock()
    relay = relay_for(pg_settings, segment, store, clock)
    await close_windows(store, clock, 2)
    assert (await relay.run_once()).delivered == 2
    segment.stop()
    await close_windows(store, clock, 3)

    down = await relay.run_once()

    assert (down.claimed, down.failed) == (3, 3)
    backlog = await status(SqlOutboxStore(store))
    assert backlog.by_destination["analytics"] == 3
    assert len(backlog.failing) == 3
    assert all(m.attempts == 1 and "Segment" in (m.last_error or "") for m in backlog.failing)

    segment.start()
    clock.advance(timedelta(hours=2))
    back = await relay.run_once()

    assert (back.delivered, back.failed) == (3, 0)
    sent = [event["messageId"] for r in segment.requests for event in r.json()["batch"]]
    analytics = [r.id for r in await outbox_rows(store) if r.destination == "analytics"]
    assert sorted(sent) == sorted(analytics)
    assert (await status(SqlOutboxStore(store))).by_destination["analytics"] == 0


async def test_a_segment_error_answer_is_retried_not_dropped(
    segment: CaptureServer, pg_settings: Settings, store: AsyncEngine
) -> None:
    clock = ManualClock()
    relay = relay_for(pg_settings, segment, store, clock)
    await close_windows(store, clock, 1)
    segment.status = 503

    refused = await relay.run_once()
    segment.status = 200
    clock.advance(timedelta(hours=2))
    accepted = await relay.run_once()

    assert (refused.failed, accepted.delivered) == (1, 1)
    [first, second] = [r.json()["batch"][0]["messageId"] for r in segment.requests]
    assert first == second
