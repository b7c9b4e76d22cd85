"""Deletes what the store keeps only for a while (docs/operations.md, "How long each table keeps
what"), in batches by index, so a prune never holds many rows or a long lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.tables import idempotency_keys, outbox, stripe_events

BATCH = 5_000


class SqlRetention:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def delete_finished_outbox(self, before: datetime) -> int:
        """Delivered or cancelled outbox rows that finished before `before`; pending ones stay."""
        finished = or_(outbox.c.delivered_at < before, outbox.c.cancelled_at < before)
        return await self._in_batches(outbox, outbox.c.id, finished)

    async def delete_stripe_events(self, before: datetime) -> int:
        """Ids of Stripe events received before `before` (Stripe retries for 3 days)."""
        return await self._in_batches(
            stripe_events, stripe_events.c.event_id, stripe_events.c.received_at < before
        )

    async def delete_idempotency_keys(self, before: datetime) -> int:
        """Keys created before `before`: their 24 hours are over."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < before)
            )
        return int(result.rowcount)

    async def _in_batches(self, table: Any, key: Any, condition: Any) -> int:
        deleted = 0
        while True:
            async with self._engine.begin() as connection:
                batch = select(key).where(condition).limit(BATCH).scalar_subquery()
                result = await connection.execute(delete(table).where(key.in_(batch)))
            deleted += int(result.rowcount)
            if result.rowcount < BATCH:
                return deleted
