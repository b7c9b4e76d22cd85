"""The outbox relay: delivers committed outbox messages to their sinks, at least once, losing none.

A pass claims due messages through the outbox store (each claim is a lease: a relay that dies
mid-pass loses nothing), delivers them outside any transaction (a slow SNS or Segment holds no
locks), then marks each delivered, or failed with a backoff. Consumers deduplicate on the event
id every delivery carries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from payment_window.backoff import backoff_delay
from payment_window.domain.events import Destination, OutboxEnvelope
from payment_window.domain.ports import Clock, DeliveryFailed, Metrics, OutboxStore, Sink
from payment_window.domain.views import EndpointStatus, FailingMessage

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=60)
RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(hours=1)
# The longest a relay waits before trying an unreachable store again.
STORE_BACKOFF_CAP = timedelta(seconds=30)
IDLE_SECONDS = 0.75
BACKLOG_GAUGE_SECONDS = 15.0


@dataclass
class RelayReport:
    """What one pass did."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "delivered": self.delivered,
            "failed": self.failed,
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """The backlog: undelivered rows per destination, and the ones that keep failing."""

    undelivered: int
    by_destination: dict[str, int]
    failing: list[FailingMessage]
    endpoints: list[EndpointStatus] = field(default_factory=list)


class OutboxRelay:
    """Moves outbox rows to their sinks; any number of relays may run against one store."""

    def __init__(
        self,
        store: OutboxStore,
        sinks: Mapping[str, Sink],
        metrics: Metrics,
        clock: Clock,
        batch_size: int = 100,
        *,
        lease: timedelta = LEASE,
        retry_base: timedelta = RETRY_BASE,
        retry_cap: timedelta = RETRY_CAP,
        concurrency: int = 8,
        idle_seconds: float = IDLE_SECONDS,
        park_after: timedelta | None = None,
        active: Callable[[], Awaitable[bool]] | None = None,
        reports: bool = True,
    ) -> None:
        """`park_after`: a message still failing this long after it was made is parked (set
        aside and alerted) instead of retried; `active`: asked before each pass, False skips it
        (a disabled webhook endpoint); `reports`: this relay logs the destinations it holds and
        sends the backlog gauge (one relay of a group does, for every destination)."""
        self._store = store
        self._sinks = dict(sinks)
        self._metrics = metrics
        self._clock = clock
        self._batch_size = batch_size
        self._lease = lease
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._gate = asyncio.Semaphore(concurrency)
        self._idle_seconds = idle_seconds
        self._park_after = park_after
        self._active = active
        self._reports = reports
        for destination in Destination if reports else ():
            if destination not in self._sinks:
                log.info(
                    "outbox_destination_held",
                    destination=destination.value,
                    detail="no sink configured: its messages wait in the outbox until one is",
                )

    async def run_once(self) -> RelayReport:
        """Claim a batch of due rows, deliver each through its sink, record the outcome."""
        report = RelayReport()
        if not self._sinks or (self._active is not None and not await self._active()):
            return report
        claimed = await self._claim()
        report.claimed = len(claimed)
        outcomes = await asyncio.gather(
            *(self._deliver(message) for message in claimed), return_exceptions=True
        )
        for message, error in zip(claimed, outcomes, strict=True):
            if isinstance(error, BaseException):
                # Recording an outcome failed (the store went away): the row's lease runs out
                # and it is delivered again; the consumer's dedup on the event id absorbs that.
                raise error
            if error is None:
                report.delivered += 1
            else:
                report.failed += 1
                report.errors.append(f"{message.id} ({message.destination}): {error}")
        return report

    async def run(self, stop_event: asyncio.Event) -> None:
        """Relay until `stop_event` is set; sleep briefly whenever a pass finds too little."""
        log.info("outbox_relay_started", destinations=sorted(self._sinks))
        loop = asyncio.get_running_loop()
        next_gauge = loop.time()
        store_failures = 0
        while not stop_event.is_set():
            if self._reports and loop.time() >= next_gauge:
                next_gauge = loop.time() + BACKLOG_GAUGE_SECONDS
                await self._report_backlog()
            try:
                report = await self.run_once()
            except Exception:
                # The store is unreachable: rows this pass claimed come back as their lease ends.
                store_failures += 1
                log.exception("outbox_pass_failed", consecutive=store_failures)
                # Bounded and jittered: relays that failed together do not retry together.
                backoff = backoff_delay(
                    store_failures,
                    first=timedelta(seconds=2 * self._idle_seconds),
                    cap=STORE_BACKOFF_CAP,
                )
                await _wait(stop_event, backoff.total_seconds())
                continue
            store_failures = 0
            if report.claimed or report.failed:
                log.info("outbox_pass", **report.as_dict())
            if report.claimed < self._batch_size:
                await _wait(stop_event, self._idle_seconds)
        log.info("outbox_relay_stopped")

    async def _claim(self) -> list[OutboxEnvelope]:
        return await self._store.claim(
            self._sinks, self._clock.now(), self._lease, self._batch_size
        )

    async def _deliver(self, message: OutboxEnvelope) -> str | None:
        """Deliver and record one message; the error text when it failed, else None."""
        tags = [f"destination:{message.destination}"]
        async with self._gate:
            try:
                await self._sinks[message.destination].deliver(message)
            except DeliveryFailed as failure:
                error = str(failure)
                log.warning("outbox_delivery_failed", **_context(message), error=error)
            except Exception as failure:
                error = f"{type(failure).__name__}: {failure}"
                log.exception("outbox_delivery_failed", **_context(message))
            else:
                await self._mark_delivered(message)
                self._metrics.increment("payments.outbox.delivered", tags=tags)
                lag = (self._clock.now() - message.created_at).total_seconds()
                self._metrics.distribution("payments.outbox.delivery_lag_seconds", lag, tags=tags)
                return None
        await self._mark_failed(message, error)
        self._metrics.increment("payments.outbox.delivery_failed", tags=tags)
        return error

    async def _mark_delivered(self, message: OutboxEnvelope) -> None:
        await self._store.mark_delivered(message.id, self._clock.now())

    async def _mark_failed(self, message: OutboxEnvelope, error: str) -> None:
        now = self._clock.now()
        if self._park_after is not None and now - message.created_at >= self._park_after:
            await self._store.park(message.id, error, now)
            log.error("outbox_message_parked", **_context(message), error=error)
            self._metrics.increment(
                "payments.outbox.parked", tags=[f"destination:{message.destination}"]
            )
            return
        delay = backoff_delay(message.attempts + 1, first=self._retry_base, cap=self._retry_cap)
        await self._store.mark_failed(message.id, error, self._clock.now() + delay)

    async def _report_backlog(self) -> None:
        try:
            counts = await self._store.undelivered_counts()
        except Exception:
            log.warning("outbox_backlog_unreadable", exc_info=True)
            return
        emit_backlog(self._metrics, counts)


class RelayGroup:
    """Relays that run side by side: the vendor sinks' relay and one per webhook endpoint, so a
    slow or failing endpoint never holds another one's deliveries, or SNS and Segment."""

    def __init__(
        self,
        relays: Sequence[OutboxRelay],
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        """`closers`: what the relays share (an HTTP client) and `run` closes when it ends."""
        self.relays = list(relays)
        self._closers = list(closers)

    async def run_once(self) -> RelayReport:
        """One pass of each relay, together; the reports summed."""
        total = RelayReport()
        for report in await asyncio.gather(*(relay.run_once() for relay in self.relays)):
            total.claimed += report.claimed
            total.delivered += report.delivered
            total.failed += report.failed
            total.errors.extend(report.errors)
        return total

    async def run(self, stop_event: asyncio.Event) -> None:
        try:
            await asyncio.gather(*(relay.run(stop_event) for relay in self.relays))
        finally:
            await self.close()

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in closers:
            await close()


def emit_backlog(metrics: Metrics, counts: Mapping[str, int]) -> None:
    """The `payments.outbox.undelivered` gauge, one series per destination."""
    for destination, count in counts.items():
        metrics.gauge("payments.outbox.undelivered", count, tags=[f"destination:{destination}"])


async def status(
    store: OutboxStore,
    *,
    limit: int = 100,
    metrics: Metrics | None = None,
    endpoints: Sequence[EndpointStatus] = (),
) -> OutboxStatus:
    """The backlog for `payment-window relay --status`: counts and the rows that keep failing."""
    counts = await store.undelivered_counts()
    if metrics is not None:
        emit_backlog(metrics, counts)
    failing = await store.failing(limit)
    return OutboxStatus(
        undelivered=sum(counts.values()),
        by_destination=counts,
        failing=failing,
        endpoints=list(endpoints),
    )


def _context(message: OutboxEnvelope) -> dict[str, Any]:
    return {
        "event_id": message.id,
        "destination": str(message.destination),
        "event_type": message.event_type,
        "session_id": message.session_id,
        "attempt": message.attempts + 1,
    }


async def _wait(stop_event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=seconds)
