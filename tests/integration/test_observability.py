"""Metrics over real DogStatsD datagrams, and analytics through the outbox to Segment.

The service is wired by `bootstrap` exactly as in production, with PW_DOGSTATSD_HOST pointing at
a UDP server on loopback (`statsd.StatsdServer`) and Segment at an HTTP capture server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe
from httpcapture import CaptureServer
from outboxsupport import ManualClock
from pydantic import SecretStr
from seeding import seed_windows
from sqlalchemy import select
from statsd import Metric, StatsdServer, counts, parse_datagram

from payment_window.adapters.metrics import DogStatsdMetrics, NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.segment import SegmentOptions
from payment_window.adapters.sinks import SinkOptions, create_sinks
from payment_window.adapters.tables import outbox
from payment_window.bootstrap import Container, bootstrap, create_metrics
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import WindowNotOpen
from payment_window.domain.events import Destination
from payment_window.domain.ports import Claim
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.times import iso
from payment_window.outbox import OutboxRelay, status

ADMIN = Actor("ops-1", Role.ADMIN)
WRITE_KEY = "wk_test_observability"
WINDOW_COUNTS = (
    "payments.window.expired_count",
    "payments.window.extension_count",
    "payments.window.override_count",
)
# Every tag key the service may put on a metric; each has a small, fixed set of values. A new
# key belongs here only if its values are bounded too (never an id, an amount or a time). The
# last three are the client's own, from DD_ENV, DD_SERVICE and DD_VERSION.
BOUNDED_TAG_KEYS = {"reason", "role", "action", "kind", "destination", "env", "service", "version"}
# Prefixes of the ids the service handles: none of them may ever reach a tag.
ID_PREFIXES = ("pw_", "cs_", "auc_", "by_", "mk_")


@pytest.fixture
def statsd() -> Iterator[StatsdServer]:
    with StatsdServer() as server:
        yield server


@pytest.fixture
def segment() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@pytest.fixture
def observed_settings(
    redis_settings: Settings, stripe: RunningStripe, statsd: StatsdServer
) -> Settings:
    return with_stripe(redis_settings, stripe).model_copy(
        update={"dogstatsd_host": statsd.host, "dogstatsd_port": statsd.port}
    )


@pytest.fixture
async def observed(observed_settings: Settings) -> AsyncIterator[Container]:
    built = await bootstrap(observed_settings)
    yield built
    await built.close()


def window_counts(metrics: list[Metric]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {key: value for key, value in counts(metrics).items() if key[0] in WINDOW_COUNTS}


def assert_bounded_tags(metrics: list[Metric]) -> None:
    for metric in metrics:
        for tag in metric.tags:
            key, _, value = tag.partition(":")
            assert key in BOUNDED_TAG_KEYS, f"{metric.name} has an unexpected tag key: {tag}"
            assert not value.startswith(ID_PREFIXES), f"{metric.name} is tagged with an id: {tag}"
            assert "pw_" not in tag, f"{metric.name} is tagged with a session id: {tag}"


async def stored(container: Container, session_id: str) -> PaymentSession:
    async with container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None
    return session


# --- the datagram parser ------------------------------------------------------------------------


def test_the_parser_reads_several_lines_packed_values_rates_and_tags() -> None:
    payload = (
        b"payments.window.expired_count:1|c|#reason:window_elapsed\n"
        b"payments.window.expiry_lateness:0.5:1.25|d|@0.5|#a:b,c:d|c:ci-123\n"
        b"payments.window.pending:7|g\n"
        b"_e{5,4}:title|text\n"
    )

    metrics, other = parse_datagram(payload)

    assert [(m.name, m.value, m.type) for m in metrics] == [
        ("payments.window.expired_count", 1.0, "c"),
        ("payments.window.expiry_lateness", 0.5, "d"),
        ("payments.window.expiry_lateness", 1.25, "d"),
        ("payments.window.pending", 7.0, "g"),
    ]
    assert metrics[0].tag("reason") == "window_elapsed"
    assert metrics[1].tags == ("a:b", "c:d") and metrics[1].sample_rate == 0.5
    assert other == ["_e{5,4}:title|text"]


def test_metrics_are_off_without_a_dogstatsd_host(pg_settings: Settings) -> None:
    assert isinstance(create_metrics(pg_settings), NullMetrics)
    configured = pg_settings.model_copy(update={"dogstatsd_host": "127.0.0.1"})
    assert isinstance(create_metrics(configured), DogStatsdMetrics)


# --- metrics ------------------------------------------------------------------------------------


async def test_committed_changes_are_counted_once_each_with_bounded_tags(
    observed: Container, stripe: RunningStripe, statsd: StatsdServer
) -> None:
    due = await seed_windows(observed, stripe, 3)
    later = observed.clock.now() + timedelta(minutes=30)
    to_extend, to_terminate = await seed_windows(observed, stripe, 2, deadline=later)
    statsd.clear()

    report = await observed.expiry_task().run_pass()
    await observed.windows.extend(to_extend.id, 15, ADMIN, reason="buyer asked")
    await observed.windows.terminate(to_terminate.id, ADMIN, reason="fraud check")
    received = statsd.take()

    assert report.expired == 3
    assert window_counts(received) == {
        ("payments.window.expired_count", ("reason:window_elapsed",)): 3,
        ("payments.window.expired_count", ("reason:admin_terminated",)): 1,
        ("payments.window.extension_count", ("role:admin",)): 1,
        ("payments.window.override_count", ("action:extend", "role:admin")): 1,
        ("payments.window.override_count", ("action:terminate", "role:admin")): 1,
    }
    lateness = [m for m in received if m.name == "payments.window.expiry_lateness"]
    assert len(lateness) == 3
    assert all(m.type == "d" and m.value >= 0 for m in lateness)
    # Stripe answered every call: no error may have been counted.
    assert not [m for m in received if m.name == "payments.window.stripe_errors"]
    assert all(m.name.startswith("payments.") for m in received)
    assert_bounded_tags(received)
    assert statsd.malformed == []

    # A second pass over the same windows: a worker whose lease ran out after its commit, or
    # a stale index entry, hands them out again. Nothing changes, so nothing is counted.
    past = await observed.index.now() - timedelta(seconds=5)
    for window in due:
        await observed.index.retry_at(window.id, past)
    again = await observed.expiry_task().run_pass()
    # A replayed expiry of a window already expired, as a retried Lambda invocation does it.
    replayed = await observed.expiry_task().close_claims([Claim(due[0].id, past)])
    received = statsd.take()

    assert (again.claimed, again.expired) == (3, 0)
    assert (replayed.claimed, replayed.expired) == (1, 0)
    assert [(await stored(observed, w.id)).status for w in due] == [Status.EXPIRED] * 3
    assert window_counts(received) == {}
    assert not [m for m in received if m.name == "payments.window.expiry_lateness"]


async def test_racing_expiries_of_one_window_count_it_once(
    observed: Container, stripe: RunningStripe, statsd: StatsdServer
) -> None:
    [window] = await seed_windows(observed, stripe, 1)
    statsd.clear()
    claim = Claim(window.id, window.expires_at)

    # Two workers holding the same claim (one's lease ran out while it was still working).
    first, second = await asyncio.gather(
        observed.expiry_task().close_claims([claim]),
        observed.expiry_task().close_claims([claim]),
    )
    # Whichever found the row busy put it back on the schedule: let that retry run too.
    later_expired = 0
    deadline = time.monotonic() + 10
    while await observed.index.next_due() is not None and time.monotonic() < deadline:
        later_expired += (await observed.expiry_task().run_pass()).expired
        await asyncio.sleep(0.1)
    received = statsd.take()

    assert await observed.index.next_due() is None
    assert first.expired + second.expired + later_expired == 1
    assert (await stored(observed, window.id)).status is Status.EXPIRED
    assert window_counts(received) == {
        ("payments.window.expired_count", ("reason:window_elapsed",)): 1
    }
    assert len([m for m in received if m.name == "payments.window.expiry_lateness"]) == 1


async def test_a_refused_override_is_not_counted(
    observed: Container, stripe: RunningStripe, statsd: StatsdServer
) -> None:
    [window] = await seed_windows(observed, stripe, 1)
    await observed.expiry_task().run_pass()
    statsd.clear()

    with pytest.raises(WindowNotOpen):
        await observed.windows.terminate(window.id, ADMIN)
    with pytest.raises(WindowNotOpen):
        await observed.windows.extend(window.id, 10, ADMIN)

    assert window_counts(statsd.take()) == {}


# --- Segment through the outbox -----------------------------------------------------------------


async def test_expired_checkouts_reach_segment_once_each_through_an_outage(
    observed: Container,
    observed_settings: Settings,
    stripe: RunningStripe,
    statsd: StatsdServer,
    segment: CaptureServer,
) -> None:
    due = await seed_windows(observed, stripe, 3)
    later = observed.clock.now() + timedelta(minutes=30)
    [to_terminate] = await seed_windows(observed, stripe, 1, deadline=later)
    await observed.expiry_task().run_pass()
    await observed.windows.terminate(to_terminate.id, ADMIN)
    closed = {s.id: await stored(observed, s.id) for s in [*due, to_terminate]}
    async with observed.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(outbox.c.id, outbox.c.session_id).where(
                    outbox.c.destination == Destination.ANALYTICS.value,
                    outbox.c.event_type == "payments.checkout.expired",
                )
            )
        ).all()
    event_ids = {row.session_id: row.id for row in rows}
    assert set(event_ids) == set(closed)

    configured = observed_settings.model_copy(
        update={"segment_write_key": SecretStr(WRITE_KEY), "segment_host": segment.url}
    )
    sinks = create_sinks(configured, SinkOptions(segment=SegmentOptions(timeout=2.0)))
    assert set(sinks) == {Destination.ANALYTICS}
    clock = ManualClock()
    relay = OutboxRelay(
        SqlOutboxStore(observed.engine), sinks, observed.metrics, clock, batch_size=2
    )
    statsd.clear()

    first = await relay.run_once()
    segment.stop()
    down = await relay.run_once()
    held = await status(SqlOutboxStore(observed.engine))
    segment.start()
    clock.advance(timedelta(hours=2))
    back = await relay.run_once()
    after = await relay.run_once()

    assert (first.delivered, down.failed, back.delivered, after.claimed) == (2, 2, 2, 0)
    assert held.by_destination[Destination.ANALYTICS.value] == 2
    assert (await status(SqlOutboxStore(observed.engine))).by_destination[
        Destination.ANALYTICS.value
    ] == 0

    events = [event for request in segment.requests for event in request.json()["batch"]]
    assert Counter(event["messageId"] for event in events) == Counter(event_ids.values())
    for event in events:
        session_id = event["properties"]["sessionId"]
        session = closed[session_id]
        terminated = session_id == to_terminate.id
        assert event["type"] == "track"
        assert event["event"] == "payments.checkout.expired"
        assert event["messageId"] == event_ids[session_id]
        assert event["userId"] == session.buyer_id
        properties = event["properties"]
        assert {
            key: properties[key]
            for key in (
                "sessionId",
                "auctionId",
                "makerId",
                "buyerId",
                "amount",
                "currency",
                "expiresAt",
                "expiredAt",
                "reason",
                "retryEligible",
            )
        } == {
            "sessionId": session.id,
            "auctionId": session.auction_id,
            "makerId": session.maker_id,
            "buyerId": session.buyer_id,
            "amount": session.amount,
            "currency": session.currency,
            "expiresAt": iso(session.expires_at),
            "expiredAt": iso(session.expired_at),
            "reason": "admin_terminated" if terminated else "window_elapsed",
            "retryEligible": not terminated,
        }

    received = statsd.take()
    assert counts(received, "payments.outbox.") == {
        ("payments.outbox.delivered", ("destination:analytics",)): 4,
        ("payments.outbox.delivery_failed", ("destination:analytics",)): 2,
    }
    lags = [m for m in received if m.name == "payments.outbox.delivery_lag_seconds"]
    assert len(lags) == 4 and all(m.type == "d" and m.value >= 0 for m in lags)
    assert_bounded_tags(received)
