"""The Stripe call budget of the deployment: every Stripe call of every process, one pace.

Stripe's rate limit is per account (100/s live, 25/s in test mode, 25/s per endpoint by default)
and shared with the marketplace's own traffic, so every call (`PW_STRIPE_RPS`) spends one budget
kept in Redis. Buyer-facing calls take the next slot, however far ahead; background calls take
a slot only when it is (almost) free now, so a burst of expiries never makes a create wait more
than one slot; `PW_STRIPE_EXPIRE_RPS` caps the background share when set. A 429 halves the pace
of every process at once, and the pace then grows back by a twentieth of the budget a second
(AIMD). While Redis is unreachable each process keeps its share: the budget divided by the
processes last seen calling Stripe.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog
from redis.asyncio import Redis, RedisCluster

from payment_window.adapters.redis_options import OUTAGE_ERRORS
from payment_window.domain.ports import Metrics, StripeBudget
from payment_window.domain.stripe_calls import CallClass

log = structlog.get_logger(__name__)

# A background call takes its slot when the slot is at most this fraction of an interval ahead:
# a create arriving then waits at most one slot (and this fraction) behind it.
BACKGROUND_HORIZON = 0.1
# After a 429 the pace grows back by this share of the budget each second...
RECOVERY_SHARE_PER_SECOND = 1 / 20
# ...and is halved again at most once this often (a storm's many 429s are one signal).
HALVE_AT_MOST_EVERY_SECONDS = 1.0
MIN_RPS = 0.5
LIVE_SECONDS = 30.0
BEAT_EVERY_SECONDS = 5.0
GAUGE_EVERY_SECONDS = 1.0

# GCRA (generic cell rate algorithm): `tat` holds the theoretical arrival time of the next call
# of the deployment, `bg` that of the next background call when the background share is capped;
# `pace` the rate after the last 429 and when it was cut. Each call reserves its slot and is told
# how long to wait for it, judged by Redis's clock. Returns {reserved, wait_us, pace_millirps}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_rps = tonumber(ARGV[1])
local rate = max_rps
local pace = redis.call('HMGET', KEYS[3], 'rate', 'at')
if pace[1] then
  rate = math.min(max_rps, tonumber(pace[1]) + tonumber(ARGV[4]) * (now - tonumber(pace[2])) / 1e6)
end
local interval = 1e6 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local slot = tat
if ARGV[3] == '1' then
  local bg_rps = tonumber(ARGV[2])
  if bg_rps > 0 then
    local bg = tonumber(redis.call('GET', KEYS[2]) or now)
    if bg > slot then slot = bg end
  end
  local ahead = slot - now - interval * tonumber(ARGV[5])
  if ahead > 0 then return {0, math.ceil(ahead), math.floor(rate * 1000)} end
  if bg_rps > 0 then
    local bg_next = slot + 1e6 / math.min(bg_rps, rate)
    redis.call('SET', KEYS[2], bg_next, 'PX', math.ceil((bg_next - now) / 1000) + 1000)
  end
end
local next_tat = slot + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {1, math.floor(slot - now), math.floor(rate * 1000)}
"""

# A 429: halve the pace, unless it was cut less than ARGV[4] microseconds ago.
_SLOW_DOWN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_rps = tonumber(ARGV[1])
local increase = tonumber(ARGV[2])
local rate = max_rps
local pace = redis.call('HMGET', KEYS[1], 'rate', 'at')
if pace[1] then
  rate = math.min(max_rps, tonumber(pace[1]) + increase * (now - tonumber(pace[2])) / 1e6)
  if now - tonumber(pace[2]) < tonumber(ARGV[4]) then return math.floor(rate * 1000) end
end
local halved = math.max(tonumber(ARGV[3]), rate / 2)
redis.call('HSET', KEYS[1], 'rate', halved, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((max_rps - halved) / increase * 1000) + 60000)
return math.floor(halved * 1000)
"""

_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_rps = tonumber(ARGV[1])
local pace = redis.call('HMGET', KEYS[1], 'rate', 'at')
if not pace[1] then return math.floor(max_rps * 1000) end
local rate = tonumber(pace[1]) + tonumber(ARGV[2]) * (now - tonumber(pace[2])) / 1e6
return math.floor(math.min(max_rps, rate) * 1000)
"""

# Processes seen spending the budget lately: their count is each one's share while Redis is away.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""


def budget_keys(prefix: str) -> tuple[str, str, str, str]:
    """The budget's keys, in one Redis Cluster slot: next slot, next background slot, pace,
    live processes."""
    base = f"{prefix}payment:stripe:{{budget}}"
    return f"{base}:tat", f"{base}:bg", f"{base}:pace", f"{base}:live"


class _Gauge:
    """`payments.stripe.budget_rps`, at most once a second (and at once when it changes)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics
        self._last = float("-inf")
        self._value: float | None = None

    def __call__(self, rps: float) -> None:
        now = time.monotonic()
        if self._metrics is None or (now - self._last < GAUGE_EVERY_SECONDS and rps == self._value):
            return
        self._last, self._value = now, rps
        self._metrics.gauge("payments.stripe.budget_rps", rps)


class LocalStripeBudget:
    """The same budget for one process (the embedded default, or while Redis is away): the
    deployment's pace divided by `share()` processes."""

    def __init__(
        self,
        per_second: float,
        background_per_second: float | None = None,
        *,
        share: Callable[[], int] = lambda: 1,
        metrics: Metrics | None = None,
    ) -> None:
        self._max = per_second
        self._background = background_per_second
        self._share = share
        self._tat = time.monotonic()
        self._bg_tat = self._tat
        self._rate: float | None = None  # after the last 429
        self._cut_at = float("-inf")
        self._lock = asyncio.Lock()
        self._gauge = _Gauge(metrics)

    def _pace(self, now: float) -> float:
        if self._rate is None:
            return self._max
        return min(
            self._max, self._rate + self._max * RECOVERY_SHARE_PER_SECOND * (now - self._cut_at)
        )

    async def acquire(self, call_class: CallClass) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                rate = self._pace(now) / max(1, self._share())
                interval = 1.0 / rate
                slot = max(self._tat, now)
                if call_class is CallClass.BACKGROUND:
                    if self._background:
                        slot = max(slot, self._bg_tat)
                    ahead = slot - now - interval * BACKGROUND_HORIZON
                    if ahead > 0:
                        wait, reserved = ahead, False
                    else:
                        if self._background:
                            self._bg_tat = slot + 1.0 / min(self._background, rate)
                        self._tat, wait, reserved = slot + interval, slot - now, True
                else:
                    self._tat, wait, reserved = slot + interval, slot - now, True
            self._gauge(rate)
            if wait > 0:
                await asyncio.sleep(wait)
            if reserved:
                return

    async def slow_down(self) -> float:
        now = time.monotonic()
        if now - self._cut_at >= HALVE_AT_MOST_EVERY_SECONDS:
            self._rate = max(MIN_RPS, self._pace(now) / 2)
            self._cut_at = now
            log.warning("stripe_budget_halved", budget_rps=round(self._rate, 2), shared=False)
        rate = self._pace(now)
        self._gauge(rate)
        return rate

    async def pace(self) -> float:
        return self._pace(time.monotonic()) / max(1, self._share())


class RedisStripeBudget:
    """One budget in Redis for every process, judged by Redis's clock."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str,
        per_second: float,
        background_per_second: float | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._acquire = client.register_script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._pace = client.register_script(_PACE)
        self._beat = client.register_script(_BEAT)
        self._keys = budget_keys(prefix)
        self._max = per_second
        self._background = background_per_second or 0
        self._increase = per_second * RECOVERY_SHARE_PER_SECOND
        self._id = uuid.uuid4().hex
        self._beaten = float("-inf")
        self.live_processes = 1
        self._gauge = _Gauge(metrics)

    async def acquire(self, call_class: CallClass) -> None:
        if time.monotonic() - self._beaten >= BEAT_EVERY_SECONDS:
            self._beaten = time.monotonic()
            live = await self._beat(keys=[self._keys[3]], args=[self._id, int(LIVE_SECONDS * 1000)])
            self.live_processes = max(1, int(live))
        tat, bg, pace = self._keys[:3]
        args = [
            self._max,
            self._background,
            "1" if call_class is CallClass.BACKGROUND else "0",
            self._increase,
            BACKGROUND_HORIZON,
        ]
        while True:
            reserved, wait_us, millirps = await self._acquire(keys=[tat, bg, pace], args=args)
            self._gauge(int(millirps) / 1000)
            if int(wait_us) > 0:
                await asyncio.sleep(int(wait_us) / 1_000_000)
            if int(reserved):
                return

    async def slow_down(self) -> float:
        args = [
            self._max,
            self._increase,
            min(MIN_RPS, self._max),
            HALVE_AT_MOST_EVERY_SECONDS * 1e6,
        ]
        before = await self.pace()
        rate = int(await self._slow_down(keys=[self._keys[2]], args=args)) / 1000
        if rate < before:
            log.warning("stripe_budget_halved", budget_rps=round(rate, 2), shared=True)
        self._gauge(rate)
        return rate

    async def pace(self) -> float:
        return int(await self._pace(keys=[self._keys[2]], args=[self._max, self._increase])) / 1000


class FailoverStripeBudget:
    """The shared budget in Redis; while Redis is unreachable, this process's share of it."""

    def __init__(
        self,
        shared: RedisStripeBudget,
        local: LocalStripeBudget,
        retry_seconds: float = 5.0,
        redis_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self._shared = shared
        self._local = local
        self._redis_down = redis_down
        self._retry_seconds = retry_seconds
        self._local_until = float("-inf")

    @classmethod
    def over(
        cls,
        client: Redis | RedisCluster,
        prefix: str,
        per_second: float,
        background_per_second: float | None = None,
        *,
        metrics: Metrics | None = None,
        redis_down: Callable[[], bool] = lambda: False,
    ) -> FailoverStripeBudget:
        shared = RedisStripeBudget(
            client, prefix, per_second, background_per_second, metrics=metrics
        )
        local = LocalStripeBudget(
            per_second,
            background_per_second,
            share=lambda: shared.live_processes,
            metrics=metrics,
        )
        return cls(shared, local, redis_down=redis_down)

    def _use_local(self) -> bool:
        # Known down (the index failed over): not even one try, a hung Redis takes seconds.
        return self._redis_down() or time.monotonic() < self._local_until

    def _went_down(self) -> None:
        if self._local_until == float("-inf") or time.monotonic() >= self._local_until:
            log.warning(
                "stripe_budget_local",
                detail="Redis is unreachable",
                share_of=self._shared.live_processes,
            )
        self._local_until = time.monotonic() + self._retry_seconds

    async def acquire(self, call_class: CallClass) -> None:
        if not self._use_local():
            try:
                await self._shared.acquire(call_class)
                return
            except OUTAGE_ERRORS:
                self._went_down()
        await self._local.acquire(call_class)

    async def slow_down(self) -> float:
        if not self._use_local():
            try:
                return await self._shared.slow_down()
            except OUTAGE_ERRORS:
                self._went_down()
        return await self._local.slow_down()

    async def pace(self) -> float:
        if not self._use_local():
            try:
                return await self._shared.pace()
            except OUTAGE_ERRORS:
                self._went_down()
        return await self._local.pace()


class BackgroundBudget:
    """A budget's background class as a plain rate limiter (the expiry task takes its slots
    before it locks a row)."""

    def __init__(self, budget: StripeBudget) -> None:
        self._budget = budget

    async def acquire(self) -> None:
        await self._budget.acquire(CallClass.BACKGROUND)
