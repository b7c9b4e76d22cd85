"""Heartbeat leases: a live worker keeps its claims, a killed one gives them back within one
short lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio
from conftest import with_stripe
from devstripe.testing import RunningStripe
from seeding import seed_windows
from sqlalchemy.ext.asyncio import AsyncEngine
from test_expiry_workers import Workers, assert_each_expired_exactly_once
from test_redis_outage import assert_on_time, wait_closed, wait_for_log

from payment_window.adapters.index_factory import create_window_index
from payment_window.adapters.leases import holding
from payment_window.adapters.redis_index import inflight_key
from payment_window.adapters.store import SqlUnitOfWorkFactory
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.ports import WindowIndex
from payment_window.domain.session import PaymentSession
from payment_window.service import new_session_id


@pytest.fixture
async def index(any_index_settings: Settings, engine: AsyncEngine) -> AsyncIterator[WindowIndex]:
    built = create_window_index(any_index_settings, engine)
    yield built
    await built.close()


async def _due_window(engine: AsyncEngine, index: WindowIndex) -> PaymentSession:
    now = datetime.now(UTC).replace(microsecond=0)
    session = PaymentSession(
        id=new_session_id(),
        auction_id=f"auc_{new_session_id()}",
        maker_id="mk_1",
        buyer_id="by_1",
        amount=1000,
        currency="eur",
        expires_at=now - timedelta(seconds=1),
        created_at=now,
        updated_at=now,
    )
    async with SqlUnitOfWorkFactory(engine)() as uow:
        await uow.sessions.add(session)
        await uow.commit()
    await index.put(session)
    return session


async def test_a_held_claim_outlives_its_lease_and_a_released_one_is_not_revived(
    index: WindowIndex, engine: AsyncEngine
) -> None:
    await _due_window(engine, index)
    claims = await index.claim_due(10, lease_seconds=1.0)
    assert len(claims) == 1

    async with holding(index, claims, lease_seconds=1.0):
        # Three leases long: without the heartbeat the claim would lapse and be claimed again.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert await index.claim_due(10, lease_seconds=1.0) == []
            await asyncio.sleep(0.25)

    # Stopped beating: the lease lapses and the window is due again (a crashed worker's case).
    deadline = time.monotonic() + 10
    while not (again := await index.claim_due(10, lease_seconds=30.0)):
        assert time.monotonic() < deadline, "the lapsed claim never came back"
        await asyncio.sleep(0.2)
    assert [claim.session_id for claim in again] == [claims[0].session_id]
    await index.release(claims[0].session_id)
    assert await index.renew(again, 30.0) == 0, "a given-back claim was renewed"


@pytest.fixture
async def seeder(redis_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Container]:
    container = await bootstrap(with_stripe(redis_settings, stripe))
    yield container
    await container.close()


async def test_a_killed_workers_windows_are_closed_by_another_within_ten_seconds(
    seeder: Container, stripe: RunningStripe, tmp_path: Path
) -> None:
    # The default lease (6 s), renewed every 2 s while the worker lives.
    settings = seeder.settings.model_copy(update={"worker_max_sleep_seconds": 0.5})
    assert settings.claim_lease_seconds <= 6
    victim = Workers(settings, tmp_path / "victim")
    survivor = Workers(settings, tmp_path / "survivor")
    (tmp_path / "victim").mkdir()
    (tmp_path / "survivor").mkdir()
    client = redis.asyncio.Redis.from_url(str(settings.redis_url))
    try:
        victim.start(1)
        await wait_for_log(victim, "worker_started", 30)
        # Its first Stripe call hangs long past the lease: it is mid-batch, its claims in hand.
        stripe.delay_next(30.0, n=1, path="/expire")
        now = seeder.clock.now()
        windows = await seed_windows(seeder, stripe, 10, deadline=now + timedelta(seconds=2))
        deadline = time.monotonic() + 20
        while await client.zcard(inflight_key(settings.redis_prefix)) < len(windows):
            assert time.monotonic() < deadline, "the victim never claimed the windows"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # not synchronisation: the victim just spends part of a lease
        victim.kill_one()

        survivor.start(1)
        await wait_closed(seeder, [w.id for w in windows], seconds=30)
        await assert_on_time(seeder, windows, timedelta(seconds=10))
    finally:
        await client.aclose()
        victim.stop_all()
        assert survivor.stop_all() == [0], survivor.log_tail()
    await assert_each_expired_exactly_once(seeder, len(windows))


async def test_a_worker_slower_than_its_lease_keeps_its_claims(
    redis_settings: Settings, stripe: RunningStripe
) -> None:
    # Ten windows at two Stripe calls a second: the batch takes about five seconds, more than
    # three leases. Without the heartbeat another worker would take them after the first.
    settings = with_stripe(redis_settings, stripe).model_copy(
        update={"claim_lease_seconds": 1.5, "expiry_batch_size": 10, "stripe_expire_rps": 2.0}
    )
    slow, other = await bootstrap(settings), await bootstrap(settings)
    try:
        windows = await seed_windows(slow, stripe, 10)
        closing = asyncio.create_task(slow.expiry_task().run_pass())
        deadline = time.monotonic() + 10
        while await slow.index.pending_count() and not await _all_claimed(slow, len(windows)):
            assert time.monotonic() < deadline, "the slow worker never claimed the windows"
            await asyncio.sleep(0.05)
        stolen = []
        while not closing.done():
            stolen += await other.index.claim_due(10, lease_seconds=1.5)
            await asyncio.sleep(0.25)
        report = await closing
        assert stolen == [], "a live worker's claims were taken by another"
        assert report.expired == len(windows)
        await assert_each_expired_exactly_once(slow, len(windows))
    finally:
        await slow.close()
        await other.close()


async def _all_claimed(container: Container, count: int) -> bool:
    client = redis.asyncio.Redis.from_url(str(container.settings.redis_url))
    try:
        return int(await client.zcard(inflight_key(container.settings.redis_prefix))) >= count
    finally:
        await client.aclose()
