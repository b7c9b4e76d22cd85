"""The index a process runs on when Redis is configured: Redis first, the store while it is down.

The one index-down fallback: claims and status reads alike go to the store while Redis is
unreachable, and every read after the first goes straight there (no connect retries paid per
read) until a probe finds Redis answering again.

Every row keeps `due_at` in the store whatever index serves, so the store's own index
(`SqlWindowIndex`: row leases, `FOR UPDATE SKIP LOCKED`) can take over claims the moment Redis
stops answering. Exactly-once does not depend on which index handed out a claim: closing a
window locks its row and checks its version. While on the store, a probe looks at Redis every
few seconds; once it answers, the index is rebuilt from the store (Redis missed every change
made meanwhile) and only then does Redis serve again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

import redis.asyncio
import structlog

from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.redis_options import OUTAGE_ERRORS
from payment_window.domain.ports import Claim, Metrics, WindowIndex, WindowSnapshot
from payment_window.domain.session import PaymentSession

log = structlog.get_logger(__name__)

T = TypeVar("T")
PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
FALLBACK_GAUGE = "payments.window.index_fallback"

Rebuild = Callable[[WindowIndex], Awaitable[object]]


class FailoverWindowIndex:
    """`WindowIndex` over Redis that claims from the store while Redis is unreachable."""

    def __init__(
        self,
        primary: RedisWindowIndex,
        fallback: WindowIndex,
        *,
        rebuild: Rebuild | None = None,
        metrics: Metrics | None = None,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._rebuild = rebuild
        self._metrics = metrics
        self._probe_seconds = probe_seconds
        self._degraded = False
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        """True while claims come from the store because Redis is unreachable."""
        return self._degraded

    @property
    def redis_client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        return self._primary.redis_client

    # --- routing -------------------------------------------------------------------------------

    def _active(self) -> WindowIndex:
        if self._degraded:
            self._maybe_probe()
            return self._fallback
        return self._primary

    async def _route(self, call: Callable[[WindowIndex], Awaitable[T]]) -> T:
        index = self._active()
        if index is self._fallback:
            return await call(self._fallback)
        try:
            return await call(self._primary)
        except OUTAGE_ERRORS as error:
            self._fail_over(error)
        return await call(self._fallback)

    def _fail_over(self, error: BaseException) -> None:
        if self._degraded:
            return
        self._degraded = True
        self._next_probe = _loop_time() + self._jittered(self._probe_seconds)
        log.error(
            "window_index_fallback",
            detail="Redis is unreachable: claiming from the store until it answers again",
            error=repr(error),
        )
        self._gauge(1)

    def _maybe_probe(self) -> None:
        if self._probe is not None and not self._probe.done():
            return
        if _loop_time() < self._next_probe:
            return
        self._probe = asyncio.get_running_loop().create_task(
            self._try_recover(), name="payment-window-index-probe"
        )

    async def _try_recover(self) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._primary.ping()
            if self._rebuild is not None:
                # Still on the store meanwhile: Redis lacks every change made during the outage.
                await self._rebuild(self._primary)
        except Exception as error:
            self._next_probe = _loop_time() + self._jittered(self._probe_seconds)
            log.info("window_index_probe_failed", error=repr(error))
            return
        self._degraded = False
        log.warning("window_index_recovered", detail="Redis answers again and was rebuilt")
        self._gauge(0)

    def _jittered(self, seconds: float) -> float:
        return seconds * random.uniform(0.75, 1.25)

    def _gauge(self, value: float) -> None:
        if self._metrics is not None:
            self._metrics.gauge(FALLBACK_GAUGE, value)

    # --- the port, routed -----------------------------------------------------------------------

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        return await self._route(lambda index: index.claim_due(limit, lease_seconds))

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        return await self._route(lambda index: index.renew(claims, lease_seconds))

    async def release(self, session_id: str) -> None:
        await self._route(lambda index: index.release(session_id))

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        await self._route(lambda index: index.retry_at(session_id, due_at))

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        await self._route(lambda index: index.settle_many(sessions))

    async def forget(self, session_id: str) -> None:
        await self._route(lambda index: index.forget(session_id))

    async def now(self) -> datetime:
        return await self._route(lambda index: index.now())

    async def put(self, session: PaymentSession) -> None:
        await self._route(lambda index: index.put(session))

    async def snapshot(self, session_id: str) -> WindowSnapshot | None:
        return await self._route(lambda index: index.snapshot(session_id))

    async def next_due(self) -> datetime | None:
        return await self._route(lambda index: index.next_due())

    async def pending_count(self) -> int:
        return await self._route(lambda index: index.pending_count())

    async def scheduled_ids(self) -> set[str]:
        return await self._route(lambda index: index.scheduled_ids())

    async def wake(self) -> None:
        await self._route(lambda index: index.wake())

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        await self._route(lambda index: index.wait_for_wake(timeout))

    async def needs_rebuild(self) -> bool:
        return await self._route(lambda index: index.needs_rebuild())

    async def mark_rebuilt(self) -> None:
        await self._route(lambda index: index.mark_rebuilt())

    async def ping(self) -> None:
        """Redis itself: readiness reports it down even while the store serves claims."""
        await self._primary.ping()

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._primary.close()
        await self._fallback.close()


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
