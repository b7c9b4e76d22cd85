"""Windows that are already due, made the way the service makes them (Stripe session first)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log, outbox, payment_sessions
from payment_window.bootstrap import Container
from payment_window.domain.session import PaymentSession
from payment_window.service import new_session_id


async def seed_windows(
    container: Container,
    count: int,
    *,
    deadline: datetime | None = None,
    spread: timedelta = timedelta(0),
    maker_id: str = "mk_seed",
) -> list[PaymentSession]:
    """`count` open windows with Stripe sessions, deadlines from `deadline` over `spread`.

    The default deadline is one second ago: due now. Deadlines in the past cannot be opened
    through the API, so the rows are written straight to the store and the index.
    """
    now = container.clock.now()
    first = deadline or now - timedelta(seconds=1)
    gate = asyncio.Semaphore(32)

    async def one(number: int) -> PaymentSession:
        offset = spread * (number / max(1, count - 1)) if count > 1 else timedelta(0)
        session = PaymentSession(
            id=new_session_id(),
            auction_id=f"auc_{number}_{new_session_id()}",
            maker_id=maker_id,
            buyer_id=f"by_{number}",
            amount=1000 + number,
            currency="eur",
            expires_at=first + offset,
            created_at=now,
            updated_at=now,
        )
        async with gate:
            checkout = await container.gateway.create(
                session, now + timedelta(hours=2), idempotency_key=f"seed:{session.id}"
            )
        return replace(
            session,
            checkout_session_id=checkout.id,
            checkout_url=checkout.url,
            checkout_expires_at=checkout.expires_at,
        )

    sessions = await asyncio.gather(*(one(n) for n in range(count)))
    for start in range(0, count, 500):
        async with container.uow() as uow:
            for session in sessions[start : start + 500]:
                await uow.sessions.add(session)
            await uow.commit()
    for session in sessions:
        await container.index.put(session)
    return list(sessions)


async def count_rows(container: Container, table_name: str) -> int:
    table = {"payment_sessions": payment_sessions, "audit_log": audit_log, "outbox": outbox}[
        table_name
    ]
    async with container.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
