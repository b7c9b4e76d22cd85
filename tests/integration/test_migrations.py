"""Migration 0006 (indexes for buyer records and the summary) goes up and down on both
stores, keeping the rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import column, func, inspect, select, table

from payment_window.adapters.migrate import migrate
from payment_window.adapters.store import SqlUnitOfWorkFactory, create_engine
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


# The columns every revision from 0003 on has: a row written as an older release would.
_OLD_SESSIONS = table(
    "payment_sessions",
    *(
        column(name, payment_sessions.c[name].type)
        for name in [
            "id",
            "auction_id",
            "maker_id",
            "buyer_id",
            "amount",
            "currency",
            "status",
            "expires_at",
            "version",
            "extended_minutes",
            "expiry_attempts",
            "reminders_sent",
            "created_at",
            "updated_at",
        ]
    ),
)


async def _add_window(settings: Settings, session_id: str = "pw_migration_0006") -> None:
    engine = create_engine(settings)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                _OLD_SESSIONS.insert().values(
                    id=session_id,
                    auction_id=f"auc-{session_id}",
                    maker_id="maker-1",
                    buyer_id="by-migration",
                    amount=1_000,
                    currency="eur",
                    status="open",
                    expires_at=now + timedelta(hours=1),
                    version=1,
                    extended_minutes=0,
                    expiry_attempts=0,
                    reminders_sent=[],
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()


async def _columns(settings: Settings, table_name: str) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns(table_name)}
            )
    finally:
        await engine.dispose()


CONNECT_COLUMNS = {
    "connect_account_id",
    "connect_charge",
    "application_fee_amount",
    "on_behalf_of",
    "attached",
    "expire_checkout_id",
}


def test_0007_adds_the_connect_columns_keeping_rows_and_removes_them_again(
    bare_settings: Settings,
) -> None:
    migrate(bare_settings, "0006")
    asyncio.run(_add_window(bare_settings, "pw_migration_0007"))
    assert not asyncio.run(_columns(bare_settings, "payment_sessions")) & CONNECT_COLUMNS

    migrate(bare_settings, "0007")
    assert asyncio.run(_columns(bare_settings, "payment_sessions")) >= CONNECT_COLUMNS
    assert "stripe_account" in asyncio.run(_columns(bare_settings, "checkout_sessions"))
    engine = create_engine(bare_settings)

    async def read() -> PaymentSession | None:
        try:
            async with SqlUnitOfWorkFactory(engine)() as uow:
                return await uow.sessions.get("pw_migration_0007")
        finally:
            await engine.dispose()

    kept = asyncio.run(read())
    assert kept is not None and kept.connect is None and not kept.attached
    assert kept.stripe_account is None and not kept.on_behalf_of

    _downgrade(bare_settings, "0006")
    assert not asyncio.run(_columns(bare_settings, "payment_sessions")) & CONNECT_COLUMNS
    assert asyncio.run(_indexes_and_rows(bare_settings))[1] == 1


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

    migrate(bare_settings, "0006")
    names, rows = asyncio.run(_indexes_and_rows(bare_settings))
    assert names >= BUYER_INDEXES and rows == 1

    _downgrade(bare_settings, "0005")
    names, rows = asyncio.run(_indexes_and_rows(bare_settings))
    assert not names & BUYER_INDEXES and rows == 1
    migrate(bare_settings)
    assert asyncio.run(_indexes_and_rows(bare_settings))[0] >= BUYER_INDEXES
