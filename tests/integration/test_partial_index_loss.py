"""Part of the index lost (some hashes, some schedule entries): every reminder and every
closing still happens, because the sweep looks for each window's next due moment in the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from sqlalchemy import select

from payment_window.adapters.redis_index import due_key, window_key
from payment_window.adapters.tables import outbox
from payment_window.config import Settings


@pytest.fixture
async def api(redis_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(redis_settings, stripe, reminder_offsets_minutes=[1])
    async with running_api(settings) as running:
        yield running


def ends_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def events_of(api: Api, session_id: str) -> list[str]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(
            select(outbox.c.event_type).where(outbox.c.session_id == session_id)
        )
        return [row.event_type for row in rows]


async def test_lost_hashes_and_schedule_entries_still_remind_and_close(
    api: Api, redis_url: str
) -> None:
    reminded = await api.open_window(expiresAt=ends_in(64))  # reminder due in about 4 s
    unscheduled = await api.open_window(expiresAt=ends_in(3))
    hashless = await api.open_window(expiresAt=ends_in(3))
    prefix = api.container.settings.redis_prefix
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.zrem(due_key(prefix), reminded["sessionId"], unscheduled["sessionId"])
        await client.delete(window_key(prefix, hashless["sessionId"]))
    finally:
        await client.aclose()
    assert await api.container.index.pending_count() == 1

    deadline = asyncio.get_running_loop().time() + 45
    while True:
        await api.container.expiry_task().run_pass(sweep=True)
        done = (
            "payment_window.reminder" in await events_of(api, reminded["sessionId"]),
            "payment_window.expired" in await events_of(api, unscheduled["sessionId"]),
            "payment_window.expired" in await events_of(api, hashless["sessionId"]),
        )
        if all(done):
            break
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {done}"
        await asyncio.sleep(0.5)

    # The reminded window is back on the schedule, at its deadline.
    snapshot = await api.container.index.snapshot(reminded["sessionId"])
    assert snapshot is not None and snapshot.status.value == "open"
    assert await api.container.index.next_due() is not None
