"""While Redis is unreachable, status reads are answered from the store: the first read that
finds Redis down switches the index over, and the next reads go straight to the store instead of
each paying the Redis client's connect retries. This is the only index-down fallback; the
status use case just asks the index."""

from __future__ import annotations

import socket
from datetime import timedelta

import redis.asyncio
from fakes import FakeClock, FakeIndex, FakeMetrics

from payment_window.adapters.failover_index import FALLBACK_GAUGE, FailoverWindowIndex
from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.domain.session import CloseReason, PaymentSession, Status


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def expired_session(clock: FakeClock) -> PaymentSession:
    now = clock.now()
    return PaymentSession(
        id="pw_1",
        auction_id="auc_1",
        maker_id="mk_1",
        buyer_id="by_1",
        amount=1000,
        currency="eur",
        expires_at=now - timedelta(seconds=1),
        created_at=now - timedelta(hours=1),
        updated_at=now,
        status=Status.EXPIRED,
        reason=CloseReason.WINDOW_ELAPSED,
        version=2,
    )


async def test_status_reads_come_from_the_store_while_redis_is_unreachable() -> None:
    clock, metrics = FakeClock(), FakeMetrics()
    store_index = FakeIndex(clock)
    closed = expired_session(clock)
    await store_index.put(closed)
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=closed_port())
    index = FailoverWindowIndex(
        RedisWindowIndex(unreachable), store_index, metrics=metrics, probe_seconds=60
    )
    try:
        for _ in range(3):
            viewed = await index.snapshot(closed.id)
            assert viewed is not None
            assert viewed.status is Status.EXPIRED  # never shown open once the store closed it
        assert index.degraded
        assert metrics.gauges[FALLBACK_GAUGE] == 1
    finally:
        await index.close()
