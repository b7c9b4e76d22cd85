"""Windows that are already due, made the way the service makes them (Stripe session first),
and windows of long ago, made by a service whose clock and Stripe run in the past."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from devstripe.events import event_for, signature_header
from devstripe.testing import RunningStripe
from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log, outbox, payment_sessions
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.service import OpenWindow, new_session_id


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


class ShiftedClock:
    """This host's clock set `behind` back, and moved forward when told: the clock of a
    service running in the past. It keeps ticking, so a local Stripe started on it and the
    service's measure of Stripe's clock (from the `Date` of its answers) agree with it."""

    def __init__(self, behind: timedelta) -> None:
        self._offset = -behind

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def timestamp(self) -> float:
        """For the local Stripe, which reads its clock as epoch seconds."""
        return self.now().timestamp()

    def advance(self, delta: timedelta) -> None:
        self._offset += delta


@dataclass
class PastService:
    """A service running in the past, with the local Stripe it talks to."""

    container: Container
    clock: ShiftedClock
    stripe: RunningStripe


@asynccontextmanager
async def running_in_the_past(settings: Settings, days_ago: int) -> AsyncIterator[PastService]:
    """A second service on the store of `settings`, its clock and a local Stripe of its own
    `days_ago` days back: Stripe refuses sessions that end in its past, so the shared one
    cannot make a window of 100 days ago."""
    clock = ShiftedClock(timedelta(days=days_ago))
    with RunningStripe(clock=clock.timestamp) as stripe:
        container = await bootstrap(
            settings.model_copy(update={"stripe_api_base": stripe.url}), clock=clock
        )
        try:
            yield PastService(container, clock, stripe)
        finally:
            await container.close()


async def old_unpaid_window(settings: Settings, buyer_id: str, days_ago: int) -> PaymentSession:
    """A window opened `days_ago` days ago and closed unpaid at its deadline, reached as the
    service reaches one: opened through the use case with a Checkout Session, closed (at
    Stripe first) by the expiry pass once the clock passed the deadline."""
    async with running_in_the_past(settings, days_ago) as past:
        opened = await past.container.windows.open(
            OpenWindow(
                auction_id=f"auc-old-{days_ago}",
                maker_id="maker-1",
                buyer_id=buyer_id,
                amount=2_000,
                currency="usd",
            ),
            Actor("marketplace", Role.SERVICE),
        )
        past.clock.advance(opened.expires_at - past.clock.now() + timedelta(seconds=1))
        await past.container.expiry_task().run_pass()
        async with past.container.uow() as uow:
            closed = await uow.sessions.get(opened.id)
        assert opened.checkout_session_id is not None
        assert past.stripe.session(opened.checkout_session_id)["status"] == "expired"
    assert closed is not None and closed.checkout_session_id == opened.checkout_session_id
    assert (closed.status, closed.reason) == (Status.EXPIRED, CloseReason.WINDOW_ELAPSED)
    return closed


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


async def closed_at(container: Container, ids: list[str]) -> dict[str, datetime | None]:
    """When each of these windows was closed (None: still open), read from the store."""
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(payment_sessions.c.id, payment_sessions.c.expired_at).where(
                payment_sessions.c.id.in_(ids)
            )
        )
        return {row.id: row.expired_at for row in rows}
