"""Heartbeat leases: claims in hand are renewed while their worker is alive.

A lease only has to outlive a worker's silence, not its slowest batch, so it can be short: a
worker killed mid-batch (`kill -9`) gives its windows back after one short lease, while a worker
waiting on a slow Stripe keeps its claims for as long as it keeps beating.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog

from payment_window.domain.ports import Claim, WindowIndex, WindowSnapshot
from payment_window.domain.session import PaymentSession

log = structlog.get_logger(__name__)

# Beats per lease: two may be missed (a slow round trip, a busy loop) before the lease lapses.
BEATS_PER_LEASE = 3
# A claim never given back (its give-back failed: Redis went away) stops being renewed after
# this: its lease then lapses and another worker takes the window, as after a crash.
MAX_HOLD_SECONDS = 300.0


def beat_seconds(lease_seconds: float) -> float:
    return lease_seconds / BEATS_PER_LEASE


async def renew_forever(index: WindowIndex, claims: Sequence[Claim], lease_seconds: float) -> None:
    """Renew `claims` every lease/3 until cancelled; a failed renewal is logged, not fatal."""
    while True:
        await asyncio.sleep(beat_seconds(lease_seconds))
        try:
            await index.renew(claims, lease_seconds)
        except Exception:
            # The next beat tries again; if every beat fails the lease lapses, which is the
            # crash-safe outcome: another worker takes the windows and the row lock decides.
            log.warning("lease_renewal_failed", claims=len(claims), exc_info=True)


@asynccontextmanager
async def holding(
    index: WindowIndex, claims: Sequence[Claim], lease_seconds: float
) -> AsyncIterator[None]:
    """Keep `claims` leased while the body runs (it closes them); stop beating after."""
    if not claims:
        yield
        return
    beating = asyncio.create_task(
        renew_forever(index, list(claims), lease_seconds), name="payment-window-lease-heartbeat"
    )
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


@dataclass
class _Held:
    claim: Claim
    give_up_at: float


class RenewingIndex:
    """Any `WindowIndex`, whose claims stay leased from `claim_due` until they are given back
    (`settle_many`, `release`, `retry_at`, `forget`): the expiry path needs no change to hold
    them. `holding` does the same for one set of claims; both renewing at once is harmless."""

    def __init__(self, inner: WindowIndex) -> None:
        self._inner = inner
        self._held: dict[str, _Held] = {}
        self._lease_seconds = 0.0
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def inner(self) -> WindowIndex:
        return self._inner

    @property
    def held(self) -> int:
        """Claims this process holds now."""
        return len(self._held)

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        claims = await self._inner.claim_due(limit, lease_seconds)
        if claims:
            give_up_at = asyncio.get_running_loop().time() + MAX_HOLD_SECONDS
            for claim in claims:
                self._held[claim.session_id] = _Held(claim, give_up_at)
            self._lease_seconds = lease_seconds
            if self._heartbeat is None or self._heartbeat.done():
                self._heartbeat = asyncio.get_running_loop().create_task(
                    self._beat(), name="payment-window-claim-heartbeat"
                )
        return claims

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while self._held:
            await asyncio.sleep(beat_seconds(self._lease_seconds))
            now = loop.time()
            for session_id in [i for i, held in self._held.items() if held.give_up_at <= now]:
                log.warning("claim_no_longer_renewed", session_id=session_id)
                del self._held[session_id]
            claims = [held.claim for held in self._held.values()]
            if not claims:
                return
            try:
                await self._inner.renew(claims, self._lease_seconds)
            except Exception:
                log.warning("lease_renewal_failed", claims=len(claims), exc_info=True)

    def _let_go(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            self._held.pop(session_id, None)

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        return await self._inner.renew(claims, lease_seconds)

    async def release(self, session_id: str) -> None:
        self._let_go([session_id])
        await self._inner.release(session_id)

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        self._let_go([session_id])
        await self._inner.retry_at(session_id, due_at)

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        self._let_go(session.id for session in sessions)
        await self._inner.settle_many(sessions)

    async def forget(self, session_id: str) -> None:
        self._let_go([session_id])
        await self._inner.forget(session_id)

    async def now(self) -> datetime:
        return await self._inner.now()

    async def put(self, session: PaymentSession) -> None:
        await self._inner.put(session)

    async def snapshot(self, session_id: str) -> WindowSnapshot | None:
        return await self._inner.snapshot(session_id)

    async def next_due(self) -> datetime | None:
        return await self._inner.next_due()

    async def pending_count(self) -> int:
        return await self._inner.pending_count()

    async def scheduled_ids(self) -> set[str]:
        return await self._inner.scheduled_ids()

    async def wake(self) -> None:
        await self._inner.wake()

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.wait_for_wake(timeout)

    async def needs_rebuild(self) -> bool:
        return await self._inner.needs_rebuild()

    async def mark_rebuilt(self) -> None:
        await self._inner.mark_rebuilt()

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        if self._heartbeat is not None and not self._heartbeat.done():
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._inner.close()
