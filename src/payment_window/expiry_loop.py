"""The long-running expiry loop (what the `worker` command runs): passes back to back, sleeping
until the next due moment or a wake-up, through outages of the index or the store."""

from __future__ import annotations

import asyncio

import structlog

from payment_window.backoff import loop_backoff
from payment_window.domain.ports import Metrics, WindowIndex
from payment_window.expiry import ExpiryTask

log = structlog.get_logger(__name__)

GAUGE_EVERY_SECONDS = 15.0


class ExpiryLoop:
    """The long-running form: passes back to back, sleeping until the next deadline."""

    def __init__(
        self,
        task: ExpiryTask,
        index: WindowIndex,
        *,
        max_sleep_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._task = task
        self._index = index
        self._max_sleep = max_sleep_seconds
        self._metrics = metrics

    async def report_health(self) -> None:
        """Gauges an operator trusts the system by: the backlog, and how overdue the worst is."""
        if self._metrics is None:
            return
        now = self._task.now()
        self._metrics.gauge("payments.window.pending", await self._index.pending_count())
        oldest = await self._task.oldest_open_deadline()
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
            wait = (next_due - self._task.now()).total_seconds()
        except Exception:
            return self._max_sleep
        return min(self._max_sleep, max(0.0, wait))
