"""Retention: `payment-window prune` deletes what the store keeps only for a while (delivered or
cancelled outbox rows, old Stripe event ids, expired Idempotency-Keys) and nothing else."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from api_harness import Api, api_settings, running_api
from conftest import settings_env
from devstripe.testing import RunningStripe
from moments import until_index_time
from sqlalchemy import func, select, update

from payment_window.adapters.tables import audit_log, idempotency_keys, outbox, stripe_events
from payment_window.config import Environment, Settings
from payment_window.domain.events import Destination

KEPT = timedelta(seconds=1)


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    # Delivered rows are kept one second here (168 hours by default).
    settings = api_settings(pg_settings, stripe, outbox_retention_hours=KEPT / timedelta(hours=1))
    async with running_api(settings) as running:
        yield running


async def _count(api: Api, table: object, *where: object) -> int:
    async with api.container.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table).where(*where)))  # type: ignore[arg-type]


async def test_prune_deletes_what_has_had_its_time_and_keeps_the_rest(api: Api) -> None:
    key = str(uuid.uuid4())
    service = {**api.auth("service", "shop"), "Idempotency-Key": key}
    body = {"auctionId": "auc-p", "makerId": "mk-1", "buyerId": "by-1", "amount": 900,
            "currency": "usd"}  # fmt: skip
    opened = await api.client.post("/payments/checkout", json=body, headers=service)
    assert opened.status_code == 201, opened.text
    ended = await api.client.post(
        f"/payments/window/{opened.json()['sessionId']}/override",
        json={"action": "terminate", "reason": "test"},
        headers=api.admin,
    )
    assert ended.status_code == 200, ended.text
    pending_before = await _count(api, outbox)
    assert pending_before > 1

    # The relay delivers the maker's messages (through its own store adapter); the rest wait.
    now = api.container.clock.now()
    claimed = await api.container.outbox.claim([Destination.MAKER], now, timedelta(minutes=1), 100)
    assert claimed
    for message in claimed:
        await api.container.outbox.mark_delivered(message.id, now)
    async with api.container.uow() as uow:
        assert await uow.stripe_events.add(
            "evt_old", "checkout.session.completed", now - timedelta(days=31)
        )
        assert await uow.stripe_events.add("evt_recent", "checkout.session.completed", now)
        await uow.commit()
    async with api.container.engine.begin() as connection:
        await connection.execute(
            update(idempotency_keys).values(created_at=now - timedelta(hours=25))
        )  # its 24 hours are over
    audit_before = await _count(api, audit_log)
    await until_index_time(
        api.container.index, now + KEPT
    )  # the delivered rows have had their time

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payment_window", "prune",
        env=settings_env(api.container.settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])

    assert report == {"outbox": len(claimed), "stripe_events": 1, "idempotency_keys": 1}
    assert await _count(api, outbox) == pending_before - len(claimed)
    assert await _count(api, outbox, outbox.c.delivered_at.is_not(None)) == 0
    async with api.container.engine.connect() as connection:
        kept = (await connection.execute(select(stripe_events.c.event_id))).scalars().all()
    assert kept == ["evt_recent"]
    assert await _count(api, idempotency_keys) == 0
    assert await _count(api, audit_log) == audit_before  # the record is kept


async def test_in_production_no_outbox_row_is_written_for_a_destination_not_configured(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    # Only the auction-events topic: no SNS topics for makers and buyers, Segment off.
    settings = api_settings(
        pg_settings,
        stripe,
        env=Environment.PRODUCTION,
        auction_events_topic_arn="arn:aws:sns:us-east-1:000000000000:auction-events",
    )
    async with running_api(settings) as api:
        opened = await api.open_window()
        ended = await api.client.post(
            f"/payments/window/{opened['sessionId']}/override",
            json={"action": "terminate", "reason": "test"},
            headers=api.admin,
        )
        assert ended.status_code == 200, ended.text
        async with api.container.engine.connect() as connection:
            destinations = set(
                (await connection.execute(select(outbox.c.destination))).scalars().all()
            )
    assert destinations == {"auction"}, destinations
