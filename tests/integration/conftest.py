"""Settings for a store (and index) of each test's own, on the real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.store import create_engine, migrate
from payment_window.config import Settings


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}", redis_url=None)
    migrate(settings)
    yield settings


@pytest.fixture
def pg_settings(postgres_url: str, pg_schema: str) -> Iterator[Settings]:
    settings = Settings(database_url=postgres_url, database_schema=pg_schema, redis_url=None)
    migrate(settings)
    yield settings


@pytest.fixture
def redis_settings(pg_settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """PostgreSQL store plus the Redis window index, as in production."""
    return pg_settings.model_copy(update={"redis_url": redis_url, "redis_prefix": redis_prefix})


@pytest.fixture(params=["sql", "redis"])
def any_index_settings(request: pytest.FixtureRequest) -> Settings:
    """Each index adapter in turn: the SQL one (no Redis) and the Redis one."""
    name = "pg_settings" if request.param == "sql" else "redis_settings"
    settings: Settings = request.getfixturevalue(name)
    return settings


@pytest.fixture
async def engine(pg_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_settings)
    yield engine
    await engine.dispose()
