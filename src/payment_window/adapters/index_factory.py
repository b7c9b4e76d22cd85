"""Choose the window index: Redis when `PW_REDIS_URL` is set, the store's own table otherwise.

A Redis Cluster is named by its scheme: `redis+cluster://host:port` (or `rediss+cluster://`),
any one node being enough to discover the rest. The scheme, rather than asking the server
(`INFO cluster`), because the factory must not connect: nothing connects before first use.
"""

from __future__ import annotations

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.failover_index import FailoverWindowIndex, Rebuild
from payment_window.adapters.leases import RenewingIndex
from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.redis_options import client_options
from payment_window.adapters.sql_index import SqlWindowIndex
from payment_window.config import Settings
from payment_window.domain.ports import Metrics, WindowIndex

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def create_window_index(settings: Settings, engine: AsyncEngine) -> WindowIndex:
    """The configured index; connects lazily, on its first command."""
    if settings.redis_url and settings.redis_url.startswith(CLUSTER_SCHEMES):
        scheme, rest = settings.redis_url.split("+cluster://", 1)
        cluster = RedisCluster.from_url(
            f"{scheme}://{rest}", decode_responses=True, max_connections=256, **client_options()
        )
        # Every key the index uses carries a hash tag, so each script and pipeline step stays
        # within one slot: the cluster client routes them like a single server's commands.
        return RedisWindowIndex(cluster, settings.redis_prefix)
    if settings.redis_url:
        # A blocking pool: a burst of concurrent callers waits for a connection instead of failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url,
            decode_responses=True,
            max_connections=64,
            timeout=10,
            **client_options(),
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        return RedisWindowIndex(client, settings.redis_prefix)
    return SqlWindowIndex(engine)


def create_resilient_index(
    settings: Settings,
    engine: AsyncEngine,
    metrics: Metrics | None = None,
    *,
    rebuild: Rebuild | None = None,
) -> WindowIndex:
    """The index a process runs on: claims in hand are renewed until given back; with Redis, it
    claims from the store while Redis is unreachable (the store keeps `due_at` on every row, so
    it can always serve claims) and `rebuild` refills Redis from the store when it answers
    again (the wiring passes it: an adapter does not run a use case)."""
    index = create_window_index(settings, engine)
    if not isinstance(index, RedisWindowIndex):
        return RenewingIndex(index)
    failover = FailoverWindowIndex(index, SqlWindowIndex(engine), rebuild=rebuild, metrics=metrics)
    return RenewingIndex(failover)
