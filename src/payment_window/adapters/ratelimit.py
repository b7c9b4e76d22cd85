"""The Stripe call budget of the expiry path, shared by every worker.

Stripe's rate limit is per account (100/s live, 25/s in test mode) and shared with checkout
creation, so a burst of due windows must drain at a steady pace rather than storm it with 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis, RedisCluster

from payment_window.adapters.redis_options import OUTAGE_ERRORS

log = structlog.get_logger(__name__)

# GCRA (generic cell rate algorithm): one key holds the theoretical arrival time of the next
# call. Each call reserves its slot (the key moves one interval on) and is told how long to wait
# for it: a caller that wakes late does not push every later slot back, as asking again after
# the wait would (on a loaded host every late wake-up was budget lost for good).
_GCRA = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now_us) / 1000) + 1000)
local wait = tat - now_us - burst
if wait > 0 then return wait end
return 0
"""


class LocalRateLimiter:
    """Evenly spaced calls for one process (the embedded default runs a single worker)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next_slot = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class RedisRateLimiter:
    """One budget in Redis for every worker, judged by Redis's clock."""

    def __init__(
        self, client: Redis | RedisCluster, key: str, per_second: float, burst: int = 1
    ) -> None:
        self._script = client.register_script(_GCRA)
        self._key = key
        # Microseconds, so budgets above 1,000 calls/s keep their meaning.
        self._interval_us = max(1, round(1_000_000 / per_second))
        self._burst_us = (burst - 1) * self._interval_us

    async def acquire(self) -> None:
        args = [self._interval_us, self._burst_us]
        wait_us = int(await self._script(keys=[self._key], args=args))
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1_000_000)


class FailoverRateLimiter:
    """The shared budget in Redis; while Redis is unreachable, this process's own budget.

    During an outage each process spends the whole budget on its own, so several workers may
    exceed it together; Stripe's 429s (retried by the SDK) then pace them. Closing windows on
    time matters more than a perfectly shared pace while Redis is down."""

    def __init__(
        self,
        shared: RedisRateLimiter,
        local: LocalRateLimiter,
        retry_seconds: float = 5.0,
        redis_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self._shared = shared
        self._local = local
        self._redis_down = redis_down
        self._retry_seconds = retry_seconds
        self._local_until = float("-inf")

    async def acquire(self) -> None:
        # Known down (the index failed over): not even one try, a hung Redis takes seconds.
        if self._redis_down() or time.monotonic() < self._local_until:
            await self._local.acquire()
            return
        try:
            await self._shared.acquire()
        except OUTAGE_ERRORS:
            if self._local_until == float("-inf") or time.monotonic() >= self._local_until:
                log.warning("stripe_budget_local", detail="Redis is unreachable")
            self._local_until = time.monotonic() + self._retry_seconds
            await self._local.acquire()
