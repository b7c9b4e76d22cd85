"""Windows that are already due, made the way the service makes them (Stripe session first)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from devstripe.events import event_for, signature_header
from devstripe.testing import RunningStripe
from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log, outbox, payment_sessions
from payment_window.bootstrap import Container
from payment_window.domain.session import PaymentSession
from payment_window.service import new_session_id


async def seed_windows(
    container: Container,
    stripe: RunningStripe,
    count: int,
    *,
    deadline: datetime | None = None,
    spread: timedelta = timedelta(0),
    maker_id: str = "mk_seed",
    buyer_id: str | None = None,
    reminder_offsets: tuple[int, ...] = (),
) -> list[PaymentSession]:
    """`count` open windows with Stripe sessions, deadlines from `deadline` over `spread`.

    The default deadline is one second ago: due now. Deadlines in the past cannot be opened
    through the API, so the rows are written straight to the store and the index.
    """
    now = container.clock.now()
    first = deadline or now - timedelta(seconds=1)
    stripe_expires = int((now + timedelta(hours=2)).timestamp())

    def one(number: int) -> PaymentSession:
        offset = spread * (number / max(1, count - 1)) if count > 1 else timedelta(0)
        expires_at = first + offset
        session = PaymentSession(
            id=new_session_id(),
            auction_id=f"auc_{number}_{new_session_id()}",
            maker_id=maker_id,
            buyer_id=buyer_id or f"by_{number}",
            amount=1000 + number,
            currency="eur",
            expires_at=expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000),
            created_at=now,
            updated_at=now,
        )
        # Straight into the local Stripe's memory: thousands of creations over HTTP would
        # dominate the test, and creation has tests of its own.
        checkout = stripe.app.store.create(
            {
                "mode": "payment",
                "expires_at": stripe_expires,
                "metadata": {"sessionId": session.id},
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "eur",
                            "unit_amount": session.amount,
                            "product_data": {"name": session.auction_id},
                        },
                    }
                ],
            },
            stripe.url,
        )
        return replace(
            session,
            checkout_session_id=checkout["id"],
            checkout_url=checkout["url"],
            checkout_expires_at=datetime.fromtimestamp(checkout["expires_at"], UTC),
        ).with_reminders_planned(reminder_offsets)

    sessions = [one(number) for number in range(count)]
    for start in range(0, count, 500):
        async with container.uow() as uow:
            for session in sessions[start : start + 500]:
                await uow.sessions.add(session)
            await uow.commit()
    for start in range(0, count, 200):
        await asyncio.gather(*(container.index.put(s) for s in sessions[start : start + 200]))
    return sessions


async def buyer_pays(container: Container, stripe: RunningStripe, window: PaymentSession) -> None:
    """The buyer pays at the local Stripe, and Stripe's signed `checkout.session.completed`
    reaches the service's webhook use case (the settings need a `stripe_webhook_secret`)."""
    assert window.checkout_session_id and container.settings.stripe_webhook_secret
    secret = container.settings.stripe_webhook_secret.get_secret_value().split(",")[0]
    payload = event_for(stripe.complete(window.checkout_session_id), "checkout.session.completed")
    await container.webhooks.handle(payload, signature_header(payload, secret))


async def count_rows(container: Container, table_name: str) -> int:
    table = {"payment_sessions": payment_sessions, "audit_log": audit_log, "outbox": outbox}[
        table_name
    ]
    async with container.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
