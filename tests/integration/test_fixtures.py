"""The root conftest's fixtures: each test gets its own schema and key prefix, cleaned after."""

from __future__ import annotations

import asyncpg
import redis.asyncio


async def test_pg_schema_is_a_real_empty_schema(postgres_url: str, pg_schema: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(f'CREATE TABLE "{pg_schema}".probe (id int)')
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", pg_schema
        )
    finally:
        await connection.close()
    assert tables == 1


async def test_redis_prefix_is_unique_and_usable(redis_url: str, redis_prefix: str) -> None:
    assert redis_prefix.startswith("t:") and redis_prefix.endswith(":")
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}probe", "1")
        assert await client.get(f"{redis_prefix}probe") == b"1"
    finally:
        await client.aclose()
