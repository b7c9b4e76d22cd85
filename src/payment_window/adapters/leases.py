"""Heartbeat leases: claims in hand are renewed while their worker is alive.

A lease only has to outlive a worker's silence, not its slowest batch, so it can be short: a
worker killed mid-batch (`kill -9`) gives its windows back after one short lease, while a worker
waiting on a slow Stripe keeps its claims for as long as it keeps beating.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog

from payment_window.domain.ports import Claim, WindowIndex

log = structlog.get_logger(__name__)

# Beats per lease: two may be missed (a slow round trip, a busy loop) before the lease lapses.
BEATS_PER_LEASE = 3


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
