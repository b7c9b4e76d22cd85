"""Outbox rows made the way the service makes them, and a clock the test moves on."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.store import SqlUnitOfWork
from payment_window.adapters.tables import outbox
from payment_window.domain.events import AuditEntry
from payment_window.domain.messages import on_close
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import CloseReason, PaymentSession, Status

POLICY = ExtensionPolicy(
    max_extension_minutes=60, makers_may_override=False, on_expiry=OnExpiry.RELIST
)


class ManualClock:
    """The relay's clock, moved on by the test to make retries fall due."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


async def close_windows(
    engine: AsyncEngine, clock: ManualClock, count: int
) -> list[PaymentSession]:
    """`count` windows closed as the service closes them: one transaction, four messages each
    (maker, buyer, analytics, auction)."""
    closed = []
    for number in range(count):
        now = clock.now()
        session = PaymentSession(
            id=f"ps_{uuid.uuid4().hex[:12]}",
            auction_id=f"auc_{number}",
            maker_id="mk_1",
            buyer_id=f"by_{number}",
            amount=2500 + number,
            currency="eur",
            expires_at=now - timedelta(seconds=1),
            created_at=now - timedelta(days=1),
            updated_at=now,
        )
        session = replace(
            session, status=Status.EXPIRED, reason=CloseReason.WINDOW_ELAPSED, expired_at=now
        )
        audit = AuditEntry(session.id, "payment_expired", "system", "open", "expired", {}, now)
        async with SqlUnitOfWork(engine) as uow:
            uow.record(audit, on_close(session, CloseReason.WINDOW_ELAPSED, POLICY, "system"))
            await uow.commit()
        closed.append(session)
    return closed


async def outbox_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        return list(await connection.execute(select(outbox).order_by(outbox.c.created_at)))
