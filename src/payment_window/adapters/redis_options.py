"""How every Redis client of the service connects: short timeouts, retries, health checks.

One place, so the index, the change feed and the Stripe budget ride out a Redis restart alike:
a connection broken by the restart is retried on a fresh one (the first request after it does
not fail), and a Redis that stops answering fails a command in about a second instead of
hanging a request or a worker for redis-py's default five.
"""

from __future__ import annotations

import builtins
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# A single command; the claim script over 200 windows takes milliseconds.
SOCKET_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0
RETRIES = 3
# Idle pooled connections are pinged before use after this long: a restart is noticed at once.
HEALTH_CHECK_SECONDS = 10


def client_options() -> dict[str, Any]:
    """Keyword arguments for `Redis.from_url`, a connection pool or `RedisCluster.from_url`."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=RETRIES),
        "retry_on_error": [ConnectionError, TimeoutError],
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }


# What an unreachable or unresponsive Redis raises once those retries are spent.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
    builtins.TimeoutError,
)
