"""The real servers the tests use, and a private corner of each for every test.

`make test` finds or starts PostgreSQL and Redis and exports PW_TEST_DATABASE_URL and
PW_TEST_REDIS_URL (scripts/test-services.sh). A test that needs a server it cannot reach is
skipped on a developer's machine and fails under CI=true. Every skip goes through
`_unavailable` (tests reach it as the `unavailable` fixture), so CI never passes by skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import asyncpg
import pytest
import redis
import redis.asyncio


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"{message} (CI=true: a test service may not be missing)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def unavailable() -> Callable[[str], NoReturn]:
    """Skip for want of a tool or service: on a developer's machine only, never under CI."""
    return _unavailable


def _asyncpg_dsn(url: str) -> str:
    """asyncpg takes the plain URL; accept the SQLAlchemy spelling too."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A plain postgresql:// URL of a reachable PostgreSQL database."""
    url = os.environ.get("PW_TEST_DATABASE_URL")
    if not url:
        _unavailable("PW_TEST_DATABASE_URL is not set")

    async def probe() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        problem = f"PostgreSQL at {url} is unreachable: {error!r}"
    else:
        return url
    _unavailable(problem)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A redis:// URL of a reachable Redis server."""
    url = os.environ.get("PW_TEST_REDIS_URL")
    if not url:
        _unavailable("PW_TEST_REDIS_URL is not set")
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except (OSError, redis.RedisError) as error:
        problem = f"Redis at {url} is unreachable: {error!r}"
    else:
        return url
    finally:
        client.close()
    _unavailable(problem)


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty schema of this test's own; dropped with everything in it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    yield schema
    connection = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix `t:<hex>:` of this test's own; every key under it is deleted afterwards."""
    prefix = f"t:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
