"""One Stripe budget for every call of the deployment, kept in Redis: buyer-facing calls first,
background calls with what is left, and a 429 slows every process at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redisserver import RedisServer

from payment_window.adapters import ratelimit
from payment_window.adapters.ratelimit import (
    FailoverStripeBudget,
    LocalStripeBudget,
    RedisStripeBudget,
)
from payment_window.bootstrap import Container
from payment_window.domain.stripe_calls import CallClass

BUYER, BACKGROUND = CallClass.BUYER, CallClass.BACKGROUND


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[redis.asyncio.Redis]]:
    made = [redis.asyncio.Redis.from_url(redis_url) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


async def test_two_processes_share_one_budget_whatever_the_class(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    budgets = [RedisStripeBudget(client, redis_prefix, per_second=20) for client in clients]
    started = time.monotonic()
    await asyncio.gather(
        *(budgets[n % 2].acquire(BUYER if n % 3 else BACKGROUND) for n in range(41))
    )
    elapsed = time.monotonic() - started

    # 41 calls at 20/s need two seconds after the first, however they are split.
    assert elapsed >= 1.9


async def test_a_burst_of_background_calls_delays_a_create_by_at_most_one_slot(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    worker, api = (RedisStripeBudget(client, redis_prefix, per_second=10) for client in clients)
    spent = 0

    async def expiries() -> None:
        nonlocal spent
        while True:
            await worker.acquire(BACKGROUND)
            spent += 1

    flood = [asyncio.create_task(expiries()) for _ in range(8)]
    try:
        # The expiries hold the budget: a second of it spent (10 slots) before a buyer asks.
        deadline = time.monotonic() + 10
        while spent < 10:
            assert time.monotonic() < deadline, f"the expiries spent only {spent} slots"
            await asyncio.sleep(0.02)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            await api.acquire(BUYER)
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.23)
    finally:
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)

    # One slot at 10/s is 100 ms (plus a tenth: the background's horizon); scheduling noise aside.
    assert max(waits) < 0.11 + 0.04, waits
    assert spent >= 10  # the background used what the creates left


async def test_the_background_share_is_capped_by_the_expire_budget(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    budget = RedisStripeBudget(clients[0], redis_prefix, per_second=100, background_per_second=5)
    started = time.monotonic()
    for _ in range(6):
        await budget.acquire(BACKGROUND)
    background_took = time.monotonic() - started
    started = time.monotonic()
    for _ in range(6):
        await budget.acquire(BUYER)
    buyer_took = time.monotonic() - started

    assert background_took >= 0.95  # 5 intervals of 200 ms
    assert buyer_took < 0.2  # buyers are not held to the background's cap


async def test_a_429_halves_every_process_pace_at_once_and_it_grows_back(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    one, other = (RedisStripeBudget(client, redis_prefix, per_second=20) for client in clients)
    assert await other.pace() == 20

    assert await one.slow_down() == 10
    # A storm's many 429s within a second are one signal.
    assert await other.slow_down() == pytest.approx(10, abs=0.1)
    assert await other.pace() == pytest.approx(10, abs=0.1)

    # The halved pace is the one every process now spends: 11 calls need 10 intervals of 100 ms.
    started = time.monotonic()
    for n in range(11):
        await (one if n % 2 else other).acquire(BUYER)
    assert time.monotonic() - started >= 0.9

    # Additive recovery: a twentieth of the budget (1/s) a second.
    await asyncio.sleep(1.0)
    grown = await one.pace()
    assert 11.5 <= grown <= 13.5
    assert await one.slow_down() == pytest.approx(grown / 2, abs=0.2)


async def test_while_redis_is_away_each_process_keeps_its_share(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "BEAT_EVERY_SECONDS", 0.0)  # every call says "still here"
    clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(2)]
    budgets = [FailoverStripeBudget.over(client, "share:", per_second=20) for client in clients]
    try:
        for budget in [*budgets, budgets[0]]:  # both seen spending the budget
            await budget.acquire(BUYER)
        redis_server.kill()

        started = time.monotonic()
        for _ in range(6):
            await budgets[0].acquire(BUYER)
        took = time.monotonic() - started
        pace = await budgets[0].pace()
    finally:
        for client in clients:
            await client.aclose()

    # Two processes were live: each keeps 10/s, so 6 calls take 5 intervals of 100 ms.
    assert pace == 10
    assert took >= 0.45


async def test_one_process_alone_paces_itself_and_halves_on_a_429() -> None:
    budget = LocalStripeBudget(10)
    assert await budget.slow_down() == 5
    started = time.monotonic()
    for _ in range(4):
        await budget.acquire(BUYER)
    assert time.monotonic() - started >= 0.55  # 3 intervals of 200 ms


async def test_the_container_spends_the_shared_budget_when_redis_is_configured(
    container: Container,
) -> None:
    budget = container.stripe_budget
    if container.settings.redis_url:
        # The shared budget in Redis, this process's share while Redis is unreachable.
        assert isinstance(budget, FailoverStripeBudget)
    else:
        assert isinstance(budget, LocalStripeBudget)
