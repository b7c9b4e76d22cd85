"""Migration 0006 (indexes for buyer records and the summary) goes up and down on both
stores, keeping the rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, inspect, select

from payment_window.adapters.store import SqlUnitOfWorkFactory, create_engine, migrate
from payment_window.adapters.tables import payment_sessions
from payment_window.config import Settings
from payment_window.domain.session import PaymentSession

BUYER_INDEXES = {
    "ix_payment_sessions_buyer_id_created_at",
    "ix_payment_sessions_unpaid_created_at_buyer_id",
    "ix_payment_sessions_unpaid_expired_at",
}


def _downgrade(settings: Settings, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "payment_window:migrations")
    config.attributes["settings"] = settings
    command.downgrade(config, revision)


async def _indexes_and_rows(settings: Settings) -> tuple[set[str], int]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("payment_sessions")}
            )
            rows = int(
                await connection.scalar(select(func.count()).select_from(payment_sessions)) or 0
            )
        return names, rows
    finally:
        await engine.dispose()


async def _add_window(settings: Settings) -> None:
    engine = create_engine(settings)
    now = datetime.now(UTC)
    try:
        async with SqlUnitOfWorkFactory(engine)() as uow:
            await uow.sessions.add(
                PaymentSession(
                    id="pw_migration_0006",
                    auction_id="auc-migration",
                    maker_id="maker-1",
                    buyer_id="by-migration",
                    amount=1_000,
                    currency="eur",
                    expires_at=now + timedelta(hours=1),
                    created_at=now,
                    updated_at=now,
                )
            )
            await uow.commit()
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings over an empty store of each kind, not yet migrated."""
    if request.param == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}", redis_url=None)
    url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return Settings(database_url=url, database_schema=schema, redis_url=None)


def test_0006_adds_the_buyer_indexes_to_a_store_with_rows_and_removes_them_again(
    bare_settings: Settings,
) -> None:
    migrate(bare_settings, "0005")
    asyncio.run(_add_window(bare_settings))
    names, rows = asyncio.run(_indexes_and_rows(bare_settings))
    assert not names & BUYER_INDEXES and rows == 1

    migrate(bare_settings)
    names, rows = asyncio.run(_indexes_and_rows(bare_settings))
    assert names >= BUYER_INDEXES and rows == 1

    _downgrade(bare_settings, "0005")
    names, rows = asyncio.run(_indexes_and_rows(bare_settings))
    assert not names & BUYER_INDEXES and rows == 1
    migrate(bare_settings)
    assert asyncio.run(_indexes_and_rows(bare_settings))[0] >= BUYER_INDEXES
