"""Buyer reminders before the deadline: once per window and offset, however many workers run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe
from moments import until_index_time
from pydantic import SecretStr
from seeding import buyer_pays, seed_windows
from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log, outbox
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.session import PaymentSession

ADMIN = Actor("ops-1", Role.ADMIN)
ONE_MINUTE = (1,)
WEBHOOK_SECRET = "whsec_reminders_0123456789"
# The reminder falls due this long after the window opens: long enough for the test to act on
# the window first (an extension, a payment), short enough not to idle.
REMINDER_AFTER = timedelta(milliseconds=300)


def deadline_for_reminder(container: Container) -> datetime:
    """A deadline whose one-minute reminder falls due `REMINDER_AFTER` from now."""
    return container.clock.now() + timedelta(minutes=1) + REMINDER_AFTER


async def until_reminders_due(container: Container, windows: list[PaymentSession]) -> None:
    """Wait for the deciding clock to pass every window's reminder moment as first planned."""
    planned = [window.next_reminder_at for window in windows]
    assert all(planned)
    await until_index_time(container.index, max(moment for moment in planned if moment))


async def reminders_sent(container: Container) -> dict[str, int]:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(outbox.c.session_id, func.count())
            .where(outbox.c.event_type == "payment_window.reminder")
            .group_by(outbox.c.session_id)
        )
        return {row[0]: row[1] for row in rows}


async def test_four_workers_send_each_reminder_exactly_once(
    any_index_settings: Settings, stripe: RunningStripe
) -> None:
    settings = with_stripe(any_index_settings, stripe).model_copy(
        update={"reminder_offsets_minutes": [1]}
    )
    workers = [await bootstrap(settings) for _ in range(4)]
    try:
        deadline = deadline_for_reminder(workers[0])
        windows = await seed_windows(
            workers[0], stripe, 60, deadline=deadline, reminder_offsets=ONE_MINUTE
        )
        await until_reminders_due(workers[0], windows)

        reports = await asyncio.gather(
            *(worker.expiry_task().run_pass() for worker in workers),
            *(worker.expiry_task().run_pass() for worker in workers),
        )

        assert sum(report.reminded for report in reports) == len(windows)
        assert await reminders_sent(workers[0]) == {window.id: 1 for window in windows}
        async with workers[0].engine.connect() as connection:
            audited = await connection.scalar(
                select(func.count()).where(audit_log.c.action == "reminder_sent")
            )
        assert audited == len(windows)
        # The windows are back on the schedule, due at their deadline now.
        next_due = await workers[0].index.next_due()
        assert next_due is not None and next_due >= deadline - timedelta(milliseconds=1)
    finally:
        for worker in workers:
            await worker.close()


@pytest.fixture
async def container(
    any_index_settings: Settings, stripe: RunningStripe
) -> AsyncIterator[Container]:
    """The service reminding buyers one minute before their deadline."""
    settings = with_stripe(any_index_settings, stripe).model_copy(
        update={
            "reminder_offsets_minutes": [1],
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
        }
    )
    built = await bootstrap(settings)
    yield built
    await built.close()


async def test_a_reminder_is_replanned_when_the_window_is_extended(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(
        container, stripe, 1, deadline=deadline_for_reminder(container), reminder_offsets=ONE_MINUTE
    )
    extended = await container.windows.extend(window.id, 5, ADMIN)
    await until_reminders_due(container, [window])

    report = await container.expiry_task().run_pass()

    assert report.reminded == 0
    assert await reminders_sent(container) == {}
    assert extended.next_reminder_at == extended.expires_at - timedelta(minutes=1)
    assert await container.index.next_due() == extended.next_reminder_at


async def test_a_sent_reminder_is_not_sent_again_after_an_extension(
    container: Container, stripe: RunningStripe
) -> None:
    [window] = await seed_windows(
        container, stripe, 1, deadline=deadline_for_reminder(container), reminder_offsets=ONE_MINUTE
    )
    await until_reminders_due(container, [window])
    assert (await container.expiry_task().run_pass()).reminded == 1

    extended = await container.windows.extend(window.id, 2, ADMIN)

    assert extended.reminders_sent == (1,)
    assert extended.next_reminder_at is None
    assert await container.index.next_due() == extended.expires_at
    assert await reminders_sent(container) == {window.id: 1}


async def test_no_reminder_for_a_window_that_is_no_longer_open(
    container: Container, stripe: RunningStripe
) -> None:
    windows = await seed_windows(
        container, stripe, 2, deadline=deadline_for_reminder(container), reminder_offsets=ONE_MINUTE
    )
    await container.windows.terminate(windows[0].id, ADMIN)
    await buyer_pays(container, stripe, windows[1])
    await until_reminders_due(container, windows)

    report = await container.expiry_task().run_pass()

    assert report.reminded == 0
    assert await reminders_sent(container) == {}
    async with container.uow() as uow:
        paid = await uow.sessions.get(windows[1].id)
    assert paid is not None and paid.status.value == "paid"
