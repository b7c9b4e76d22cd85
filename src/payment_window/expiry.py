"""The expiry task: close every overdue window exactly once, through crashes and Stripe faults.

One pass claims due windows from the index in batches (a claim is a lease: a worker killed
mid-batch loses nothing, its claims come back when the lease ends) and asks the service to close
each one. The worker repeats passes, sleeping until the next deadline or a wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from payment_window.domain.ports import (
    CheckoutGateway,
    CheckoutSession,
    Claim,
    Metrics,
    RateLimiter,
    WindowIndex,
)
from payment_window.domain.session import PaymentSession, Status
from payment_window.service import PaymentWindows

log = structlog.get_logger(__name__)

MAX_RETRY_DELAY = timedelta(minutes=5)
# How long past its deadline an open window may sit unindexed before the sweep re-indexes it; the
# grace keeps the sweep out of the way of a worker that is about to close it anyway.
SWEEP_GRACE = timedelta(seconds=10)


class PacedGateway:
    """The gateway the expiry path uses: every Stripe call waits for the shared budget."""

    def __init__(self, gateway: CheckoutGateway, budget: RateLimiter) -> None:
        self._gateway = gateway
        self._budget = budget

    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        await self._budget.acquire()
        return await self._gateway.create(session, expires_at, idempotency_key)

    async def retrieve(self, checkout_session_id: str) -> CheckoutSession:
        await self._budget.acquire()
        return await self._gateway.retrieve(checkout_session_id)

    async def expire(self, checkout_session_id: str, idempotency_key: str) -> CheckoutSession:
        await self._budget.acquire()
        return await self._gateway.expire(checkout_session_id, idempotency_key)

    def parse_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        return self._gateway.parse_webhook(payload, signature)


@dataclass
class PassReport:
    """What one pass did, for the CLI, the Lambda's response and the logs."""

    claimed: int = 0
    expired: int = 0
    paid: int = 0
    rescheduled: int = 0
    rotated: int = 0
    reminded: int = 0
    retried: int = 0
    dropped: int = 0
    reindexed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "expired": self.expired,
            "paid": self.paid,
            "rescheduled": self.rescheduled,
            "rotated": self.rotated,
            "reminded": self.reminded,
            "retried": self.retried,
            "dropped": self.dropped,
            "reindexed": self.reindexed,
        }


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter, so a Stripe outage is not met with a synchronized storm."""
    base = min(MAX_RETRY_DELAY.total_seconds(), 2.0 ** min(attempts, 10))
    return timedelta(seconds=base * random.uniform(0.5, 1.0))


T = TypeVar("T")
INDEX_CONCURRENCY = 64
BUSY_RETRY = timedelta(seconds=1)
GAUGE_EVERY_SECONDS = 15.0


class ExpiryTask:
    """Claims due windows and closes them; safe with any number of workers at once."""

    def __init__(
        self,
        windows: PaymentWindows,
        index: WindowIndex,
        *,
        batch_size: int,
        lease_seconds: float,
        rebuild: Callable[[], Awaitable[int]] | None = None,
        concurrency: int = 2,
    ) -> None:
        self._windows = windows
        self._index = index
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._concurrency = concurrency
        self._rebuild = rebuild
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the windows in hand, give the rest of the claims back, and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_stopping(self, seconds: float) -> None:
        """Return once a stop is asked, or after `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_pass(self, *, sweep: bool = False) -> PassReport:
        """Claim and close due windows until none is due (or a stop is asked)."""
        structlog.contextvars.bind_contextvars(correlation_id=f"expiry-{uuid.uuid4().hex[:16]}")
        report = PassReport()
        if self._rebuild is not None and await self._index.needs_rebuild():
            log.warning("window_index_rebuilding", why="the index lost its contents")
            report.reindexed = await self._rebuild()
        elif sweep:
            report.reindexed = await self.sweep_store()

        async def claim_and_close() -> None:
            while not self.stopping:
                claims = await self._index.claim_due(self._batch_size, self._lease_seconds)
                if not claims:
                    return
                report.claimed += len(claims)
                await self._close_batch(claims, report)

        # Two batches in flight: one waits on Stripe while the other commits.
        await asyncio.gather(*(claim_and_close() for _ in range(self._concurrency)))
        return report

    async def close_claims(self, claims: list[Claim]) -> PassReport:
        """Close windows already claimed from the index."""
        report = PassReport(claimed=len(claims))
        await self._close_batch(claims, report)
        return report

    async def sweep_store(self) -> int:
        """Re-index overdue open windows the index lost (a flushed Redis): the backstop."""
        now = await self._index.now()
        missing = await self._windows.overdue_open(now - SWEEP_GRACE)
        await _each(missing, self._index.put)
        if missing:
            log.warning("reindexed_overdue_windows", count=len(missing))
        return len(missing)

    async def _close_batch(self, claims: list[Claim], report: PassReport) -> None:
        if self.stopping:
            await _each(claims, lambda claim: self._index.retry_at(claim.session_id, claim.due_at))
            return
        try:
            now = await self._index.now()
            batch = await self._windows.expire_due([claim.session_id for claim in claims], now)
        except Exception:
            # The store or Stripe path failed as a whole: every claim comes back after a backoff.
            log.exception("expiry_batch_failed", claims=len(claims))
            later = await self._index.now() + retry_delay(3)
            await _each(claims, lambda claim: self._index.retry_at(claim.session_id, later))
            report.retried += len(claims)
            return

        # Whatever the store says now: open and not yet due (extended meanwhile) goes back on
        # the schedule at its new deadline; a final one leaves it.
        await self._index.settle_many([*batch.changed, *batch.unchanged])
        await _each([session.id for session in batch.rotated], self._index.release)
        await _each(batch.missing, self._index.forget)
        # Backoffs count from now, not from the claim: Stripe's own retries may have taken a while.
        now = await self._index.now()
        soon = now + BUSY_RETRY
        await _each(batch.busy, lambda session_id: self._index.retry_at(session_id, soon))

        async def back_off(failure: tuple[str, str, int]) -> None:
            session_id, error, attempts = failure
            delay = retry_delay(attempts)
            await self._index.retry_at(session_id, now + delay)
            log.warning(
                "expiry_retry_scheduled",
                session_id=session_id,
                error=error,
                attempts=attempts,
                retry_in_seconds=round(delay.total_seconds(), 1),
            )

        await _each(batch.failed, back_off)
        for session in batch.changed:
            if session.status is Status.EXPIRED:
                report.expired += 1
            else:
                report.paid += 1
        report.rescheduled += sum(1 for s in batch.unchanged if s.is_open) + len(batch.busy)
        report.rotated += len(batch.rotated)
        report.reminded += len(batch.reminded)
        report.dropped += len(batch.missing)
        report.retried += len(batch.failed)


async def _each(items: Sequence[T], action: Callable[[T], Awaitable[object]]) -> None:
    """Run `action` over `items` concurrently, a bounded number at a time."""
    for start in range(0, len(items), INDEX_CONCURRENCY):
        await asyncio.gather(*(action(item) for item in items[start : start + INDEX_CONCURRENCY]))


LOOP_BACKOFF_CAP_SECONDS = 5.0


def loop_backoff(failures: int) -> float:
    """Seconds a long-running loop waits after its n-th failure in a row: 0.25 s doubling to
    a few seconds, jittered so workers that failed together do not retry together."""
    base = min(LOOP_BACKOFF_CAP_SECONDS, 0.25 * 2.0 ** min(failures - 1, 8))
    return base * random.uniform(0.5, 1.0)


class Worker:
    """The long-running form: passes back to back, sleeping until the next deadline."""

    def __init__(
        self,
        task: ExpiryTask,
        index: WindowIndex,
        *,
        max_sleep_seconds: float,
        metrics: Metrics | None = None,
        windows: PaymentWindows | None = None,
    ) -> None:
        self._task = task
        self._index = index
        self._max_sleep = max_sleep_seconds
        self._metrics = metrics
        self._windows = windows

    async def report_health(self) -> None:
        """Gauges an operator trusts the system by: the backlog, and how overdue the worst is."""
        if self._metrics is None or self._windows is None:
            return
        now = await self._index.now()
        self._metrics.gauge("payments.window.pending", await self._index.pending_count())
        oldest = await self._windows.oldest_open_deadline()
        overdue = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        self._metrics.gauge("payments.window.oldest_overdue_seconds", overdue)

    async def run(self, *, sweep_every: float = 60.0) -> None:
        """Passes until stopped. No error of the index or the store ends the loop: the worker
        logs it, backs off (bounded, with jitter) and goes on; its claims are leases."""
        loop = asyncio.get_running_loop()
        last_sweep = last_gauges = float("-inf")
        failures = 0
        while not self._task.stopping:
            try:
                if loop.time() - last_gauges >= GAUGE_EVERY_SECONDS:
                    last_gauges = loop.time()
                    await self._report_health_quietly()
                sweep = loop.time() - last_sweep >= sweep_every
                if sweep:
                    last_sweep = loop.time()
                report = await self._task.run_pass(sweep=sweep)
                if report.claimed:
                    log.info("expiry_pass", **report.as_dict())
                if self._task.stopping:
                    break
                await self._index.wait_for_wake(await self._sleep_seconds())
                failures = 0
            except Exception:
                failures += 1
                delay = loop_backoff(failures)
                log.exception(
                    "expiry_loop_failed", consecutive=failures, retry_in_seconds=round(delay, 2)
                )
                await self._pause(delay)

    async def _report_health_quietly(self) -> None:
        try:
            await self.report_health()
        except Exception:
            log.warning("health_gauges_failed", exc_info=True)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no longer than it takes a stop to be asked."""
        await self._task.wait_stopping(seconds)

    async def _sleep_seconds(self) -> float:
        try:
            next_due = await self._index.next_due()
            if next_due is None:
                return self._max_sleep
            wait = (next_due - await self._index.now()).total_seconds()
        except Exception:
            return self._max_sleep
        return min(self._max_sleep, max(0.0, wait))
