"""Migration 0008 (webhook endpoints' state, parked outbox rows) goes up and down on both stores,
keeping the outbox rows already written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from test_migrations import _downgrade

from payment_window.adapters.migrate import migrate
from payment_window.adapters.store import create_engine
from payment_window.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}", redis_url=None)
    url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return Settings(database_url=url, database_schema=schema, redis_url=None)


async def _shape(settings: Settings) -> tuple[set[str], set[str], int]:
    """The outbox's columns, the tables, and how many outbox rows there are."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            columns, tables = await connection.run_sync(
                lambda sync: (
                    {c["name"] for c in inspect(sync).get_columns("outbox")},
                    set(inspect(sync).get_table_names()),
                )
            )
            rows = int(
                await connection.scalar(select(func.count()).select_from(text("outbox"))) or 0
            )
        return columns, tables, rows
    finally:
        await engine.dispose()


async def _add_outbox_row(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO outbox (id, session_id, destination, event_type, payload, "
                    "attempts, next_attempt_at, created_at) VALUES "
                    "('evt-0008', 'pw_1', 'auction', 'auction.relist_requested', '{}', 0, "
                    ":now, :now)"
                ),
                {"now": datetime.now(UTC).replace(tzinfo=None)},
            )
    finally:
        await engine.dispose()


def test_0008_adds_endpoint_state_and_parking_and_removes_them_again(
    bare_settings: Settings,
) -> None:
    migrate(bare_settings, "0007")
    asyncio.run(_add_outbox_row(bare_settings))
    columns, tables, rows = asyncio.run(_shape(bare_settings))
    assert "parked_at" not in columns and "webhook_endpoints" not in tables and rows == 1

    migrate(bare_settings, "0008")
    columns, tables, rows = asyncio.run(_shape(bare_settings))
    assert "parked_at" in columns and "webhook_endpoints" in tables and rows == 1

    _downgrade(bare_settings, "0007")
    columns, tables, rows = asyncio.run(_shape(bare_settings))
    assert "parked_at" not in columns and "webhook_endpoints" not in tables and rows == 1
