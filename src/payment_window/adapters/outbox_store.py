"""The outbox repository: SQLAlchemy Core over the `outbox` table, for the relay.

A claim is one short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so many relays share
the work; SQLite's single writer serialises it) that pushes the rows' `next_attempt_at` out by a
lease. A relay that dies mid-pass loses nothing: its claimed rows fall due again when the lease
ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_window.adapters.tables import outbox
from payment_window.domain.events import Destination, OutboxEnvelope
from payment_window.domain.views import FailingMessage

MAX_ERROR_LENGTH = 500


def _pending() -> Any:
    return outbox.c.delivered_at.is_(None) & outbox.c.cancelled_at.is_(None)


def _destination(value: str) -> Destination | str:
    """A `Destination`, or a webhook endpoint's own (`webhook:…`) as stored."""
    try:
        return Destination(value)
    except ValueError:
        return value


def _envelope(row: Row[Any]) -> OutboxEnvelope:
    return OutboxEnvelope(
        id=row.id,
        destination=_destination(row.destination),
        event_type=row.event_type,
        payload=dict(row.payload),
        session_id=row.session_id,
        created_at=row.created_at,
        attempts=row.attempts,
    )


class SqlOutboxStore:
    """The relay's view of the outbox table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(
        self, destinations: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxEnvelope]:
        due = (
            select(outbox.c.id)
            .where(_pending())
            .where(outbox.c.parked_at.is_(None))
            .where(outbox.c.next_attempt_at <= now)
            .where(outbox.c.destination.in_([str(d) for d in destinations]))
            .order_by(outbox.c.next_attempt_at, outbox.c.created_at)
            .limit(limit)
        )
        async with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            # One statement: the rows it leases are the rows it returns, with no gap between.
            result = await connection.execute(
                update(outbox)
                .where(outbox.c.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=now + lease)
                .returning(*outbox.c)
            )
            rows = result.all()
        return sorted((_envelope(row) for row in rows), key=lambda m: (m.created_at, m.id))

    async def mark_delivered(self, message_id: str, at: datetime) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .where(outbox.c.delivered_at.is_(None))
                .values(delivered_at=at)
            )

    async def mark_failed(self, message_id: str, error: str, retry_at: datetime) -> None:
        await self._record_failure(message_id, error, next_attempt_at=retry_at)

    async def park(self, message_id: str, error: str, at: datetime) -> None:
        """Set a message that kept failing aside: no relay claims it until it is redelivered."""
        await self._record_failure(message_id, error, parked_at=at)

    async def _record_failure(self, message_id: str, error: str, **then: datetime) -> None:
        """Count a failed attempt and set when (or whether) the message is tried again."""
        async with self._engine.begin() as connection:
            # Guarded: a relay whose lease ran out must not undo another relay's delivery.
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .where(outbox.c.delivered_at.is_(None))
                .values(attempts=outbox.c.attempts + 1, last_error=error[:MAX_ERROR_LENGTH], **then)
            )

    async def redeliver(self, message_id: str, now: datetime) -> bool:
        """Make an undelivered (parked or waiting) message due now; False when there is none."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .where(_pending())
                .values(parked_at=None, next_attempt_at=now)
            )
            return bool(result.rowcount)

    async def undelivered_counts(self) -> dict[str, int]:
        async with self._engine.connect() as connection:
            return await undelivered_counts(connection)

    async def failing(self, limit: int) -> list[FailingMessage]:
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(outbox)
                .where(_pending())
                .where(outbox.c.attempts > 0)
                .order_by(outbox.c.attempts.desc(), outbox.c.created_at)
                .limit(limit)
            )
            return [
                FailingMessage(
                    id=row.id,
                    session_id=row.session_id,
                    destination=row.destination,
                    event_type=row.event_type,
                    attempts=row.attempts,
                    last_error=row.last_error,
                    next_attempt_at=row.next_attempt_at,
                    created_at=row.created_at,
                    parked_at=row.parked_at,
                )
                for row in result
            ]


async def undelivered_counts(connection: AsyncConnection) -> dict[str, int]:
    """Undelivered, uncancelled rows per destination (every destination, zeros included; each
    webhook endpoint with rows waiting, parked ones included)."""
    result = await connection.execute(
        select(outbox.c.destination, func.count()).where(_pending()).group_by(outbox.c.destination)
    )
    found = Counter({row[0]: int(row[1]) for row in result})
    counts = {destination.value: found[destination.value] for destination in Destination}
    counts.update((name, count) for name, count in found.items() if name not in counts)
    return counts


async def parked_counts(connection: AsyncConnection) -> dict[str, int]:
    """Parked rows per destination (only destinations that have some)."""
    result = await connection.execute(
        select(outbox.c.destination, func.count())
        .where(_pending())
        .where(outbox.c.parked_at.is_not(None))
        .group_by(outbox.c.destination)
    )
    return {row[0]: int(row[1]) for row in result}


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
