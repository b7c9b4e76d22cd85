"""The outbox relay: delivers committed outbox rows to their sinks, at least once, losing none.

A pass claims due rows in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so many
relays share the work; SQLite's single writer serialises the claim) and pushes their
`next_attempt_at` out by a lease, then commits. Delivery happens outside any transaction: a slow
SNS or Segment holds no locks. Each row is then marked delivered, or failed with a backoff. A
relay that dies mid-pass loses nothing: its claimed rows fall due again when the lease ends.
Consumers deduplicate on the event id every delivery carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_window.adapters.tables import outbox
from payment_window.domain.events import Destination
from payment_window.domain.ports import Clock, Metrics

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=60)
RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(hours=1)
IDLE_SECONDS = 0.75
BACKLOG_GAUGE_SECONDS = 15.0
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class OutboxEnvelope:
    """One outbox row on its way out: what a sink needs to deliver it."""

    id: str
    destination: Destination
    event_type: str
    payload: dict[str, Any]
    session_id: str | None
    created_at: datetime
    attempts: int = 0


class Sink(Protocol):
    """Delivers one message to one destination; raises on failure (the relay retries)."""

    async def deliver(self, message: OutboxEnvelope) -> None: ...


class DeliveryFailed(Exception):
    """A sink could not deliver (the vendor refused or was unreachable); worth a retry."""


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
class FailingMessage:
    """An undelivered row that has failed at least once."""

    id: str
    session_id: str | None
    destination: str
    event_type: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """The backlog: undelivered rows per destination, and the ones that keep failing."""

    undelivered: int
    by_destination: dict[str, int]
    failing: list[FailingMessage]


def _pending() -> Any:
    return outbox.c.delivered_at.is_(None) & outbox.c.cancelled_at.is_(None)


def retry_delay(
    attempts: int, base: timedelta = RETRY_BASE, cap: timedelta = RETRY_CAP
) -> timedelta:
    """Exponential backoff after `attempts` failures, capped, with jitter in its upper half."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2 ** min(attempts - 1, 30))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _envelope(row: Row[Any]) -> OutboxEnvelope:
    return OutboxEnvelope(
        id=row.id,
        destination=Destination(row.destination),
        event_type=row.event_type,
        payload=dict(row.payload),
        session_id=row.session_id,
        created_at=row.created_at,
        attempts=row.attempts,
    )


class OutboxRelay:
    """Moves outbox rows to their sinks; any number of relays may run against one store."""

    def __init__(
        self,
        engine: AsyncEngine,
        sinks: Mapping[Destination, Sink],
        metrics: Metrics,
        clock: Clock,
        batch_size: int = 100,
        *,
        lease: timedelta = LEASE,
        retry_base: timedelta = RETRY_BASE,
        retry_cap: timedelta = RETRY_CAP,
        concurrency: int = 8,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._engine = engine
        self._sinks = dict(sinks)
        self._metrics = metrics
        self._clock = clock
        self._batch_size = batch_size
        self._lease = lease
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._gate = asyncio.Semaphore(concurrency)
        self._idle_seconds = idle_seconds
        for destination in Destination:
            if destination not in self._sinks:
                log.info(
                    "outbox_destination_held",
                    destination=destination.value,
                    detail="no sink configured: its messages wait in the outbox until one is",
                )

    async def run_once(self) -> RelayReport:
        """Claim a batch of due rows, deliver each through its sink, record the outcome."""
        report = RelayReport()
        if not self._sinks:
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
                report.errors.append(f"{message.id} ({message.destination.value}): {error}")
        return report

    async def run(self, stop_event: asyncio.Event) -> None:
        """Relay until `stop_event` is set; sleep briefly whenever a pass finds too little."""
        log.info("outbox_relay_started", destinations=sorted(self._sinks))
        loop = asyncio.get_running_loop()
        next_gauge = loop.time()
        store_failures = 0
        while not stop_event.is_set():
            if loop.time() >= next_gauge:
                next_gauge = loop.time() + BACKLOG_GAUGE_SECONDS
                await self._report_backlog()
            try:
                report = await self.run_once()
            except Exception:
                # The store is unreachable: rows this pass claimed come back as their lease ends.
                store_failures += 1
                log.exception("outbox_pass_failed", consecutive=store_failures)
                # Bounded and jittered: relays that failed together do not retry together.
                backoff = min(30.0, self._idle_seconds * 2 ** min(store_failures, 10))
                await _wait(stop_event, backoff * random.uniform(0.5, 1.0))
                continue
            store_failures = 0
            if report.claimed or report.failed:
                log.info("outbox_pass", **report.as_dict())
            if report.claimed < self._batch_size:
                await _wait(stop_event, self._idle_seconds)
        log.info("outbox_relay_stopped")

    async def _claim(self) -> list[OutboxEnvelope]:
        now = self._clock.now()
        due = (
            select(outbox.c.id)
            .where(_pending())
            .where(outbox.c.next_attempt_at <= now)
            .where(outbox.c.destination.in_([d.value for d in self._sinks]))
            .order_by(outbox.c.next_attempt_at, outbox.c.created_at)
            .limit(self._batch_size)
        )
        async with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            # One statement: the rows it leases are the rows it returns, with no gap between.
            result = await connection.execute(
                update(outbox)
                .where(outbox.c.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=now + self._lease)
                .returning(*outbox.c)
            )
            rows = result.all()
        return sorted((_envelope(row) for row in rows), key=lambda m: (m.created_at, m.id))

    async def _deliver(self, message: OutboxEnvelope) -> str | None:
        """Deliver and record one message; the error text when it failed, else None."""
        tags = [f"destination:{message.destination.value}"]
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
        async with self._engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == message.id)
                .where(outbox.c.delivered_at.is_(None))
                .values(delivered_at=self._clock.now())
            )

    async def _mark_failed(self, message: OutboxEnvelope, error: str) -> None:
        attempts = message.attempts + 1
        retry_at = self._clock.now() + retry_delay(attempts, self._retry_base, self._retry_cap)
        async with self._engine.begin() as connection:
            # Guarded: a relay whose lease ran out must not undo another relay's delivery.
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == message.id)
                .where(outbox.c.delivered_at.is_(None))
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:MAX_ERROR_LENGTH],
                    next_attempt_at=retry_at,
                )
            )

    async def _report_backlog(self) -> None:
        try:
            counts = await undelivered_counts(self._engine)
        except Exception:
            log.warning("outbox_backlog_unreadable", exc_info=True)
            return
        emit_backlog(self._metrics, counts)


async def undelivered_counts(engine: AsyncEngine) -> dict[str, int]:
    """Undelivered, uncancelled rows per destination (every destination, zeros included)."""
    async with engine.connect() as connection:
        result = await connection.execute(
            select(outbox.c.destination, func.count())
            .where(_pending())
            .group_by(outbox.c.destination)
        )
        found = Counter({row[0]: int(row[1]) for row in result})
    return {destination.value: found[destination.value] for destination in Destination}


def emit_backlog(metrics: Metrics, counts: Mapping[str, int]) -> None:
    """The `payments.outbox.undelivered` gauge, one series per destination."""
    for destination, count in counts.items():
        metrics.gauge("payments.outbox.undelivered", count, tags=[f"destination:{destination}"])


async def status(
    engine: AsyncEngine, *, limit: int = 100, metrics: Metrics | None = None
) -> OutboxStatus:
    """The backlog for `payment-window relay --status`: counts and the rows that keep failing."""
    counts = await undelivered_counts(engine)
    if metrics is not None:
        emit_backlog(metrics, counts)
    async with engine.connect() as connection:
        result = await connection.execute(
            select(outbox)
            .where(_pending())
            .where(outbox.c.attempts > 0)
            .order_by(outbox.c.attempts.desc(), outbox.c.created_at)
            .limit(limit)
        )
        failing = [
            FailingMessage(
                id=row.id,
                session_id=row.session_id,
                destination=row.destination,
                event_type=row.event_type,
                attempts=row.attempts,
                last_error=row.last_error,
                next_attempt_at=row.next_attempt_at,
                created_at=row.created_at,
            )
            for row in result
        ]
    return OutboxStatus(undelivered=sum(counts.values()), by_destination=counts, failing=failing)


async def cancel_pending(
    connection: AsyncConnection,
    session_id: str,
    event_types: Collection[str],
    now: datetime,
) -> int:
    """Cancel a session's undelivered messages of `event_types`, inside the caller's transaction.

    Returns how many were cancelled. A message a relay has already claimed may still go out (it
    is in flight), so a caller that must be sure follows up with a correcting event.
    """
    if not event_types:
        return 0
    result = await connection.execute(
        update(outbox)
        .where(outbox.c.session_id == session_id)
        .where(outbox.c.event_type.in_(list(event_types)))
        .where(_pending())
        .values(cancelled_at=now)
    )
    return int(result.rowcount or 0)


def _context(message: OutboxEnvelope) -> dict[str, Any]:
    return {
        "event_id": message.id,
        "destination": message.destination.value,
        "event_type": message.event_type,
        "session_id": message.session_id,
        "attempt": message.attempts + 1,
    }


async def _wait(stop_event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=seconds)
