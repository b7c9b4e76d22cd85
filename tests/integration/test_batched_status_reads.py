"""Status reads sent together on the index's own connections, against a private redis-server
that is restarted and paused: every read gets its own window, whatever else is in its batch."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
from redisserver import RedisServer

from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.redis_options import OUTAGE_ERRORS, client_options
from payment_window.adapters.redis_reads import CONNECTIONS_KEPT
from payment_window.domain.session import PaymentSession


@pytest.fixture
async def index(redis_server: RedisServer) -> AsyncIterator[RedisWindowIndex]:
    client = redis.asyncio.Redis.from_url(
        redis_server.url, decode_responses=True, **client_options()
    )
    index = RedisWindowIndex(client, prefix="t:")
    yield index
    await index.close()


def window(number: int) -> PaymentSession:
    now = datetime.now(UTC)
    return PaymentSession(
        id=f"pw_{secrets.token_hex(12)}",
        auction_id=f"auc_{number}",
        maker_id="mk_1",
        buyer_id=f"by_{number}",
        amount=1000 + number,
        currency="eur",
        expires_at=now + timedelta(hours=1),
        created_at=now,
        updated_at=now,
        checkout_session_id=f"cs_test_{secrets.token_hex(8)}",
        checkout_url=f"https://checkout.example/c/pay/{number}/" + "x" * 80,
        checkout_expires_at=now + timedelta(hours=2),
    )


async def connected_clients(redis_server: RedisServer) -> int:
    probe = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        return int((await probe.info("clients"))["connected_clients"]) - 1
    finally:
        await probe.aclose()


async def test_reads_asked_together_each_get_their_own_window(
    index: RedisWindowIndex, redis_server: RedisServer
) -> None:
    windows = [window(n) for n in range(50)]
    for each in windows:
        await index.put(each)
    before = await connected_clients(redis_server)

    wanted = [windows[n % 50] for n in range(500)] + [window(99)]  # the last is unknown
    snapshots = await asyncio.gather(*(index.snapshot(w.id) for w in wanted))

    assert snapshots[-1] is None
    for asked, got in zip(wanted[:-1], snapshots[:-1], strict=True):
        assert got is not None
        assert (got.session_id, got.auction_id, got.amount, got.checkout_url) == (
            asked.id,
            asked.auction_id,
            asked.amount,
            asked.checkout_url,
        )
    # 501 reads at once went out together: a handful of connections, not one per read.
    assert await connected_clients(redis_server) - before <= CONNECTIONS_KEPT


async def test_a_read_whose_caller_left_does_not_disturb_the_others(
    index: RedisWindowIndex,
) -> None:
    windows = [window(n) for n in range(10)]
    for each in windows:
        await index.put(each)
    reads = [asyncio.ensure_future(index.snapshot(w.id)) for w in windows]
    reads[3].cancel()  # a client that hung up while its read was in the batch

    results = await asyncio.gather(*reads, return_exceptions=True)

    assert isinstance(results[3], asyncio.CancelledError)
    for number, result in enumerate(results):
        if number != 3:
            assert not isinstance(result, BaseException)
            assert result is not None and result.session_id == windows[number].id
    assert (await index.snapshot(windows[3].id)) is not None


async def test_reads_after_a_restart_go_out_on_fresh_connections(
    index: RedisWindowIndex, redis_server: RedisServer
) -> None:
    before = window(1)
    await index.put(before)
    assert await index.snapshot(before.id) is not None  # a connection is now kept

    redis_server.kill()
    redis_server.start()  # memory only: it comes back empty, as a failed-over node would
    after = window(2)
    await index.put(after)

    found = await asyncio.gather(index.snapshot(before.id), index.snapshot(after.id))

    assert found[0] is None
    assert found[1] is not None and found[1].session_id == after.id


async def test_reads_fail_within_the_socket_timeout_while_redis_hangs_then_recover(
    index: RedisWindowIndex, redis_server: RedisServer
) -> None:
    windows = [window(n) for n in range(5)]
    for each in windows:
        await index.put(each)
    redis_server.pause()
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(index.snapshot(w.id) for w in windows), return_exceptions=True
        )
        waited = time.monotonic() - started
    finally:
        redis_server.resume()

    assert all(isinstance(result, OUTAGE_ERRORS) for result in results), results
    assert waited < 5, "a hung Redis must fail the read, not hold the request"
    again = await asyncio.gather(*(index.snapshot(w.id) for w in windows))
    assert [s.session_id if s else None for s in again] == [w.id for w in windows]
