"""Choose the window index: Redis when `PW_REDIS_URL` is set, the store's own table otherwise."""

from __future__ import annotations

import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.sql_index import SqlWindowIndex
from payment_window.config import Settings
from payment_window.domain.ports import WindowIndex


def create_window_index(settings: Settings, engine: AsyncEngine) -> WindowIndex:
    """The configured index; connects lazily, on its first command."""
    if settings.redis_url:
        # A blocking pool: a burst of concurrent callers waits for a connection instead of failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url, decode_responses=True, max_connections=64, timeout=10
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        return RedisWindowIndex(client, settings.redis_prefix)
    return SqlWindowIndex(engine)
