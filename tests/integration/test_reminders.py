"""Buyer reminders before the deadline: once per window and offset, however many workers run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from conftest import with_stripe
from devstripe.testing import RunningStripe
from seeding import seed_windows
from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log, outbox
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role

ADMIN = Actor("ops-1", Role.ADMIN)
ONE_MINUTE = (1,)


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
        deadline = workers[0].clock.now() + timedelta(minutes=1, seconds=1)
        windows = await seed_windows(
            workers[0], stripe, 60, deadline=deadline, reminder_offsets=ONE_MINUTE
        )
        await asyncio.sleep(1.2)

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
        update={"reminder_offsets_minutes": [1]}
    )
    built = await bootstrap(settings)
    yield built
    await built.close()


async def test_a_reminder_is_replanned_when_the_window_is_extended(
    container: Container, stripe: RunningStripe
) -> None:
    deadline = container.clock.now() + timedelta(minutes=1, seconds=1)
    [window] = await seed_windows(
        container, stripe, 1, deadline=deadline, reminder_offsets=ONE_MINUTE
    )
    extended = await container.windows.extend(window.id, 5, ADMIN)
    await asyncio.sleep(1.2)

    report = await container.expiry_task().run_pass()

    assert report.reminded == 0
    assert await reminders_sent(container) == {}
    assert extended.next_reminder_at == extended.expires_at - timedelta(minutes=1)
    assert await container.index.next_due() == extended.next_reminder_at


async def test_a_sent_reminder_is_not_sent_again_after_an_extension(
    container: Container, stripe: RunningStripe
) -> None:
    deadline = container.clock.now() + timedelta(minutes=1, seconds=1)
    [window] = await seed_windows(
        container, stripe, 1, deadline=deadline, reminder_offsets=ONE_MINUTE
    )
    await asyncio.sleep(1.2)
    assert (await container.expiry_task().run_pass()).reminded == 1

    extended = await container.windows.extend(window.id, 2, ADMIN)

    assert extended.reminders_sent == (1,)
    assert extended.next_reminder_at is None
    assert await container.index.next_due() == extended.expires_at
    assert await reminders_sent(container) == {window.id: 1}


async def test_no_reminder_for_a_window_that_is_no_longer_open(
    container: Container, stripe: RunningStripe
) -> None:
    deadline = container.clock.now() + timedelta(minutes=1, seconds=1)
    windows = await seed_windows(
        container, stripe, 2, deadline=deadline, reminder_offsets=ONE_MINUTE
    )
    await container.windows.terminate(windows[0].id, ADMIN)
    stripe.complete(windows[1].checkout_session_id, paid=True)
    async with container.uow() as uow:
        paid = windows[1].record_payment(container.clock.now(), confirmed=True)
        await uow.sessions.update(paid)
        await uow.commit()
    await container.index.put(paid)
    await asyncio.sleep(1.2)

    report = await container.expiry_task().run_pass()

    assert report.reminded == 0
    assert await reminders_sent(container) == {}
