"""The window index served by the store: `due_at` and `lease_until` on `payment_sessions`.

A row is scheduled while `due_at` is set, and claimed while `lease_until` lies ahead. On
PostgreSQL every comparison uses the database clock and claims skip rows other claimers hold
(`FOR UPDATE SKIP LOCKED`); SQLite is the single-process embedded default, so there the process
clock serves and one conditional UPDATE is atomic enough.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, null, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.tables import UtcDateTime, payment_sessions
from payment_window.domain.ports import Claim, WindowSnapshot
from payment_window.domain.session import PaymentSession, Status, close_reason

_t = payment_sessions


class SqlWindowIndex:
    """`WindowIndex` over the store's own table; wakes reach this process only."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._on_postgres = engine.dialect.name == "postgresql"
        self._woken = asyncio.Event()

    def _clock(self, later: timedelta = timedelta(0)) -> ColumnElement[datetime]:
        """The time (plus `later`) that a statement compares against."""
        if self._on_postgres:
            return func.now() + later if later else func.now()
        return literal(datetime.now(UTC) + later, UtcDateTime)

    async def now(self) -> datetime:
        if not self._on_postgres:
            return datetime.now(UTC)
        async with self._engine.connect() as connection:
            moment = await connection.scalar(select(func.now()))
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC)

    async def put(self, session: PaymentSession) -> None:
        await self._execute(
            update(_t)
            .where(_t.c.id == session.id, _t.c.version <= session.version)
            .values(due_at=session.due_at if session.is_scheduled else None, lease_until=None)
        )

    async def snapshot(self, session_id: str) -> WindowSnapshot | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_t).where(_t.c.id == session_id))).first()
        if row is None:
            return None
        return WindowSnapshot(
            session_id=row.id,
            auction_id=row.auction_id,
            maker_id=row.maker_id,
            buyer_id=row.buyer_id,
            amount=row.amount,
            currency=row.currency,
            status=Status(row.status),
            expires_at=row.expires_at,
            version=row.version,
            reason=close_reason(row.reason),
            checkout_url=row.checkout_url,
        )

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        if limit < 1:
            return []
        now = self._clock()
        lease_end = self._clock(timedelta(seconds=lease_seconds))
        due = (
            select(_t.c.id)
            .where(
                # Scheduled rows only (`put` clears due_at otherwise): open windows, pending
                # payments to ask Stripe about again, paid windows with a session to expire.
                _t.c.due_at <= now,
                or_(_t.c.lease_until.is_(None), _t.c.lease_until <= now),
            )
            .order_by(_t.c.due_at)
            .limit(limit)
        )
        if self._on_postgres:
            due = due.with_for_update(skip_locked=True)
        taken = due.subquery("taken")
        claim = (
            update(_t)
            .where(_t.c.id == taken.c.id)
            .values(lease_until=lease_end)
            .returning(_t.c.id, _t.c.due_at)
        )
        async with self._engine.begin() as connection:
            rows = (await connection.execute(claim)).all()
        return sorted(
            (Claim(session_id=row.id, due_at=row.due_at) for row in rows),
            key=lambda claim: claim.due_at,
        )

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        if not claims:
            return 0
        now = self._clock()
        held = select(_t.c.id).where(
            _t.c.id.in_([claim.session_id for claim in claims]),
            _t.c.lease_until > now,
            _t.c.due_at.is_not(None),
        )
        if self._on_postgres:
            # A row locked by the batch closing it needs no renewal (a claimer skips locked
            # rows), and waiting for that lock would stall every renewal behind Stripe calls.
            held = held.with_for_update(skip_locked=True)
        taken = held.subquery("held")
        statement = (
            update(_t)
            .where(_t.c.id == taken.c.id)
            .values(lease_until=self._clock(timedelta(seconds=lease_seconds)))
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount or 0)

    async def release(self, session_id: str) -> None:
        # Still leased means not re-put since the claim (put clears the lease): like the Redis
        # index, a released claim then leaves the schedule.
        await self._execute(
            update(_t)
            .where(_t.c.id == session_id)
            .values(
                due_at=case((_t.c.lease_until.is_not(None), null()), else_=_t.c.due_at),
                lease_until=None,
            )
        )

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        await self._execute(
            update(_t)
            # Still scheduled (not settled meanwhile): open, or with Stripe work left to do.
            .where(_t.c.id == session_id, _t.c.due_at.is_not(None))
            .values(due_at=due_at, lease_until=None)
        )

    async def next_due(self) -> datetime | None:
        now = self._clock()
        # A row leased by a claimer that has since crashed comes due when its lease ends.
        when = case((_t.c.lease_until > now, _t.c.lease_until), else_=_t.c.due_at)
        async with self._engine.connect() as connection:
            moment = await connection.scalar(select(func.min(when)).where(_t.c.due_at.is_not(None)))
        assert moment is None or isinstance(moment, datetime)
        return moment

    async def pending_count(self) -> int:
        async with self._engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).select_from(_t).where(_t.c.due_at.is_not(None))
            )
        return int(count or 0)

    async def scheduled_ids(self) -> set[str]:
        async with self._engine.connect() as connection:
            result = await connection.stream(select(_t.c.id).where(_t.c.due_at.is_not(None)))
            return {row.id async for row in result}

    async def forget(self, session_id: str) -> None:
        await self._execute(
            update(_t).where(_t.c.id == session_id).values(due_at=None, lease_until=None)
        )

    async def wake(self) -> None:
        self._woken.set()

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        try:
            await asyncio.wait_for(self._woken.wait(), timeout)
        except TimeoutError:
            return
        self._woken.clear()

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        for session in sessions:
            await self.put(session)
            await self.release(session.id)

    async def needs_rebuild(self) -> bool:
        return False  # the store is the index: there is nothing to lose

    async def mark_rebuilt(self) -> None:
        pass

    async def ping(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """The engine belongs to the caller, who disposes of it."""

    async def _execute(self, statement: Any) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(statement)
