"""The expiry path's Stripe budget is one budget for every worker, kept in Redis."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio

from payment_window.adapters.ratelimit import (
    FailoverRateLimiter,
    LocalRateLimiter,
    RedisRateLimiter,
)
from payment_window.bootstrap import Container


async def test_two_workers_share_one_budget(redis_url: str, redis_prefix: str) -> None:
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(2)]
    key = f"{redis_prefix}payment:stripe:{{expire-budget}}"
    limiters = [RedisRateLimiter(client, key, per_second=20) for client in clients]
    try:
        started = time.monotonic()
        await asyncio.gather(*(limiters[n % 2].acquire() for n in range(41)))
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            await client.aclose()

    # 41 calls at 20/s need two seconds after the first, however they are split.
    assert elapsed >= 1.9


async def test_workers_take_the_shared_budget_when_redis_is_configured(
    container: Container,
) -> None:
    budget = container.stripe_budget
    if container.settings.redis_url:
        # The shared budget in Redis, this process's own while Redis is unreachable.
        assert isinstance(budget, FailoverRateLimiter)
    else:
        assert isinstance(budget, LocalRateLimiter)
