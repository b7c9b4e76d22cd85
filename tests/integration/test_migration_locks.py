"""Migrations on a live store: a migration never queues behind a long transaction for longer
than its lock timeout (readers are not blocked behind it), is retried, then fails saying why;
the next migration applies while the service answers requests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.migrate import MigrationLockTimeout, migrate
from payment_window.adapters.store import create_engine
from payment_window.config import Settings

pytestmark = pytest.mark.slow


def _head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", "payment_window:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


HEAD = _head_revision()


def _settings(postgres_url: str, schema: str) -> Settings:
    return Settings(
        database_url=postgres_url, database_schema=schema, migration_lock_timeout_seconds=0.3
    )


@pytest.fixture
def at_0005(postgres_url: str, pg_schema: str) -> Settings:
    settings = _settings(postgres_url, pg_schema)
    migrate(settings, "0005")
    return settings


@pytest.fixture
def before_head(postgres_url: str, pg_schema: str) -> Settings:
    """The schema this code runs on, less the last migration (0010: the retention and claim
    indexes, built CONCURRENTLY), which the test then applies under load."""
    settings = _settings(postgres_url, pg_schema)
    migrate(settings, "0009")
    return settings


@pytest.fixture
async def engine(at_0005: Settings) -> AsyncIterator[AsyncEngine]:
    built = create_engine(at_0005)
    yield built
    await built.dispose()


async def _version(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        return str(await connection.scalar(text("SELECT version_num FROM alembic_version")))


async def test_a_migration_behind_a_long_transaction_gives_up_clearly_and_blocks_no_writer(
    at_0005: Settings, engine: AsyncEngine
) -> None:
    async with engine.connect() as holder:
        # A long transaction that has written the table (as one holding a row across a slow
        # Stripe call): 0006's index build needs a lock that conflicts with it.
        await holder.execute(text("UPDATE payment_sessions SET version = version WHERE false"))
        started = time.monotonic()
        migrating = asyncio.create_task(asyncio.to_thread(migrate, at_0005, "head", attempts=2))
        # Writers are not queued behind the waiting migration for longer than its lock timeout.
        writes: list[float] = []
        while not migrating.done():
            async with engine.begin() as writer:
                began = time.monotonic()
                await writer.execute(
                    text("UPDATE payment_sessions SET version = version WHERE id = 'none'")
                )
                writes.append(time.monotonic() - began)
            await asyncio.sleep(0.05)
        with pytest.raises(MigrationLockTimeout, match="could not lock its table"):
            await migrating
        assert time.monotonic() - started < 20
        assert writes and max(writes) < 1.5, writes
        await holder.rollback()
    assert await _version(engine) == "0005"  # nothing half-applied

    await asyncio.to_thread(migrate, at_0005, "head")
    assert await _version(engine) == HEAD
    async with engine.connect() as connection:
        valid = await connection.scalar(
            text(
                "SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c"
                " ON c.oid = i.indexrelid WHERE c.relname IN ('ix_outbox_due',"
                " 'ix_outbox_cancelled_at', 'ix_stripe_events_received_at')"
                " AND c.relnamespace = current_schema()::regnamespace"
            )
        )
    assert valid is True


@pytest.fixture
async def api(before_head: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(before_head, stripe)) as running:
        yield running


async def test_the_next_migration_applies_while_the_service_answers_under_load(
    api: Api, before_head: Settings
) -> None:
    opened = await api.open_window()
    buyer = api.auth("buyer", "buyer-1")
    service = api.auth("service", "shop")
    statuses: list[int] = []
    slowest = 0.0
    stop = asyncio.Event()

    async def load() -> None:
        nonlocal slowest
        while not stop.is_set():
            began = time.monotonic()
            created = await api.client.post(
                "/payments/checkout",
                json={"auctionId": f"auc-{uuid.uuid4().hex[:8]}", "makerId": "maker-1",
                      "buyerId": "buyer-1", "amount": 900, "currency": "usd"},
                headers=service,
            )  # fmt: skip
            read = await api.client.get(
                f"/payments/checkout/{opened['sessionId']}/status", headers=buyer
            )
            statuses.extend([created.status_code, read.status_code])
            slowest = max(slowest, time.monotonic() - began)

    async def until_answered(count: int) -> None:
        """Until `count` more answers came: the load is running, on whichever side of the
        migration the test is."""
        target, deadline = len(statuses) + count, time.monotonic() + 30
        while len(statuses) < target:
            assert time.monotonic() < deadline, f"the load stalled at {len(statuses)} answers"
            await asyncio.sleep(0.02)

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await until_answered(8)
        await asyncio.to_thread(migrate, before_head, "head")
        await until_answered(8)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    assert statuses and set(statuses) <= {200, 201}, sorted(set(statuses))
    print(f"{len(statuses)} requests during the migration, slowest pair {slowest:.2f} s")
    async with api.container.engine.connect() as connection:
        assert await connection.scalar(text("SELECT version_num FROM alembic_version")) == HEAD
