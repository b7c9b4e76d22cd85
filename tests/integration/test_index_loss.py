"""A flushed Redis loses nothing: the store is the truth and the index is rebuilt from it."""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio
from conftest import with_stripe
from devstripe.testing import RunningStripe
from moments import until_index_time
from seeding import seed_windows

from payment_window.bootstrap import bootstrap
from payment_window.config import Settings
from payment_window.domain.session import Status
from payment_window.runner import reconcile_index


async def test_after_a_flush_the_next_pass_restores_every_open_window_and_they_expire_on_time(
    pg_settings: Settings, private_redis: str, stripe: RunningStripe
) -> None:
    settings = with_stripe(pg_settings, stripe).model_copy(update={"redis_url": private_redis})
    container = await bootstrap(settings)
    try:
        await reconcile_index(settings)  # a deployed index has been built once
        soon = container.clock.now() + timedelta(seconds=2)
        windows = await seed_windows(container, stripe, 20, deadline=soon)
        client = redis.asyncio.Redis.from_url(private_redis)
        await client.flushall()
        await client.aclose()
        assert await container.index.pending_count() == 0

        task = container.expiry_task()
        first = await task.run_pass()
        assert first.reindexed == len(windows) and first.expired == 0
        assert await container.index.pending_count() == len(windows)

        await until_index_time(container.index, soon)
        second = await task.run_pass()

        assert second.expired == len(windows)
        for window in windows:
            async with container.uow() as uow:
                session = await uow.sessions.get(window.id)
            assert session is not None and session.status is Status.EXPIRED
            assert session.expired_at is not None
            assert timedelta(0) <= session.expired_at - session.expires_at < timedelta(seconds=1)
    finally:
        await container.close()


async def test_reconcile_restores_the_schedule_after_a_flush(
    pg_settings: Settings, private_redis: str, stripe: RunningStripe
) -> None:
    settings = with_stripe(pg_settings, stripe).model_copy(update={"redis_url": private_redis})
    container = await bootstrap(settings)
    try:
        later = container.clock.now() + timedelta(hours=1)
        windows = await seed_windows(container, stripe, 5, deadline=later)
        client = redis.asyncio.Redis.from_url(private_redis)
        await client.flushall()
        await client.aclose()

        report = await reconcile_index(settings)

        assert report["added"] == len(windows)
        assert await container.index.pending_count() == len(windows)
        assert await container.index.next_due() == later.replace(
            microsecond=later.microsecond // 1000 * 1000
        )
    finally:
        await container.close()
