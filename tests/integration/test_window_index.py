"""The window index: one behaviour, whether Redis or the store's own table serves it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio
from moments import until_index_time
from redis.crc import key_slot
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.index_factory import create_window_index
from payment_window.adapters.read_model import SqlReadModel
from payment_window.adapters.redis_index import (
    RedisWindowIndex,
    due_key,
    inflight_key,
    window_key,
)
from payment_window.adapters.store import SqlUnitOfWork, create_engine
from payment_window.config import Settings
from payment_window.domain.ports import WindowIndex
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.reconcile import ReconcileReport, reconcile

# Shaped like the local Stripe server's: longer than 64 bytes, so the index keeps it in pieces.
CHECKOUT_URL = "http://127.0.0.1:12111/c/pay/cs_test_" + "a1B2c3D4e5F6g7H8i9" * 3 + "j0K1"
LONG = timedelta(hours=1)


@dataclass
class World:
    """A store and an index on it, plus ways to open and change windows in both."""

    settings: Settings
    engine: AsyncEngine
    index: WindowIndex

    def another_index(self) -> WindowIndex:
        """A second claimer: its own Redis client, or its own connections to the store."""
        return create_window_index(self.settings, self.engine)

    async def open_windows(self, count: int, expires_at: datetime) -> list[PaymentSession]:
        sessions = [new_session(expires_at) for _ in range(count)]
        async with SqlUnitOfWork(self.engine) as uow:
            for session in sessions:
                await uow.sessions.add(session)
            await uow.commit()
        for session in sessions:
            await self.index.put(session)
        return sessions

    async def open_window(self, expires_at: datetime) -> PaymentSession:
        (session,) = await self.open_windows(1, expires_at)
        return session

    async def store(self, session: PaymentSession) -> PaymentSession:
        """Save a changed session in the store only, as a crash before the index put would."""
        async with SqlUnitOfWork(self.engine) as uow:
            await uow.sessions.update(session)
            await uow.commit()
        return session

    async def save(self, session: PaymentSession) -> PaymentSession:
        await self.store(session)
        await self.index.put(session)
        return session


def new_session(expires_at: datetime) -> PaymentSession:
    now = datetime.now(UTC)
    return PaymentSession(
        id=f"pw_{secrets.token_hex(12)}",  # as the service makes them
        auction_id=f"auc_{secrets.token_hex(8)}",
        maker_id="mk_7f3a19c2",
        buyer_id="by_19c27f3a",
        amount=125_00,
        currency="usd",
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
        checkout_session_id=f"cs_test_{secrets.token_hex(29)}",
        checkout_url=CHECKOUT_URL,
        # Stripe's session outlives the window (its 30-minute minimum): due at the deadline.
        checkout_expires_at=expires_at + timedelta(hours=1),
    )


def extended(session: PaymentSession, expires_at: datetime) -> PaymentSession:
    """Extended (and, past Stripe's session, given a new one, as the service does)."""
    return replace(
        session,
        expires_at=expires_at,
        checkout_expires_at=expires_at + timedelta(hours=1),
        version=session.version + 1,
    )


def same_ms(left: datetime, right: datetime) -> bool:
    return abs(left - right) < timedelta(milliseconds=1)


async def build_world(settings: Settings) -> AsyncIterator[World]:
    engine = create_engine(settings)
    index = create_window_index(settings, engine)
    try:
        yield World(settings, engine, index)
    finally:
        await index.close()
        await engine.dispose()


@pytest.fixture
async def world(any_index_settings: Settings) -> AsyncIterator[World]:
    async for world in build_world(any_index_settings):
        yield world


@pytest.fixture
async def redis_world(redis_settings: Settings) -> AsyncIterator[World]:
    async for world in build_world(redis_settings):
        yield world


@pytest.fixture
async def sqlite_world(sqlite_settings: Settings) -> AsyncIterator[World]:
    async for world in build_world(sqlite_settings):
        yield world


# -- the behaviour, on every index ---------------------------------------------------------


async def test_put_window_reads_back_as_its_snapshot(world: World) -> None:
    session = await world.open_window(await world.index.now() + LONG)

    snapshot = await world.index.snapshot(session.id)

    assert snapshot is not None
    assert (snapshot.session_id, snapshot.auction_id, snapshot.maker_id, snapshot.buyer_id) == (
        session.id,
        session.auction_id,
        session.maker_id,
        session.buyer_id,
    )
    assert (snapshot.amount, snapshot.currency) == (session.amount, session.currency)
    assert (snapshot.status, snapshot.version, snapshot.reason) == (Status.OPEN, 1, None)
    assert snapshot.checkout_url == CHECKOUT_URL
    assert same_ms(snapshot.expires_at, session.expires_at)
    assert await world.index.snapshot("ps_unknown") is None


async def test_claim_takes_only_windows_due_by_the_index_clock(world: World) -> None:
    now = await world.index.now()
    due = await world.open_window(now - timedelta(seconds=1))
    later = await world.open_window(now + LONG)

    claims = await world.index.claim_due(10, 30)

    assert [claim.session_id for claim in claims] == [due.id]
    assert same_ms(claims[0].due_at, due.expires_at)
    assert await world.index.scheduled_ids() == {due.id, later.id}


async def test_claimed_window_is_not_claimed_again_while_its_lease_holds(world: World) -> None:
    session = await world.open_window(await world.index.now() - timedelta(seconds=1))
    other = world.another_index()
    try:
        assert [c.session_id for c in await world.index.claim_due(10, 30)] == [session.id]
        assert await other.claim_due(10, 30) == []
        assert await world.index.claim_due(10, 30) == []
    finally:
        await other.close()


async def test_window_comes_back_when_its_lease_ends(world: World) -> None:
    session = await world.open_window(await world.index.now() - timedelta(seconds=1))
    started = time.monotonic()
    assert len(await world.index.claim_due(10, 0.3)) == 1
    assert await world.index.claim_due(10, 0.3) == []
    next_due = await world.index.next_due()
    assert next_due is not None and next_due <= await world.index.now() + timedelta(seconds=1)

    claimed: list[str] = []
    deadline = time.monotonic() + 5
    while not claimed and time.monotonic() < deadline:
        claimed = [c.session_id for c in await world.index.claim_due(10, 30)]
        await asyncio.sleep(0.05)

    assert claimed == [session.id]
    assert time.monotonic() - started >= 0.25


async def test_released_claim_leaves_the_schedule(world: World) -> None:
    session = await world.open_window(await world.index.now() - timedelta(seconds=1))
    lease_ends = await world.index.now() + timedelta(seconds=0.3)
    await world.index.claim_due(10, 0.3)

    await world.index.release(session.id)
    await until_index_time(world.index, lease_ends)  # a lease not released would end here

    assert await world.index.claim_due(10, 30) == []
    assert session.id not in await world.index.scheduled_ids()
    assert await world.index.pending_count() == 0


async def test_claim_given_back_is_due_again_at_its_retry_time(world: World) -> None:
    now = await world.index.now()
    first = await world.open_window(now - timedelta(seconds=2))
    second = await world.open_window(now - timedelta(seconds=1))
    assert len(await world.index.claim_due(10, 30)) == 2

    await world.index.retry_at(first.id, now - timedelta(seconds=5))
    await world.index.retry_at(second.id, now + LONG)

    assert [c.session_id for c in await world.index.claim_due(10, 30)] == [first.id]
    next_due = await world.index.next_due()
    assert next_due is not None and next_due > now + timedelta(seconds=5)
    assert await world.index.scheduled_ids() == {first.id, second.id}


async def test_window_extended_while_claimed_is_due_only_at_its_new_deadline(
    world: World,
) -> None:
    now = await world.index.now()
    session = await world.open_window(now - timedelta(seconds=1))
    lease_ends = await world.index.now() + timedelta(seconds=0.3)
    assert len(await world.index.claim_due(10, 0.3)) == 1

    longer = await world.save(extended(session, now + LONG))
    await until_index_time(world.index, lease_ends)  # the claimer's lease ends without a release

    assert await world.index.claim_due(10, 30) == []
    next_due = await world.index.next_due()
    assert next_due is not None and same_ms(next_due, longer.expires_at)
    await world.index.release(session.id)
    assert await world.index.scheduled_ids() == {session.id}


async def test_closed_window_leaves_the_schedule(world: World) -> None:
    now = await world.index.now()
    claimed = await world.open_window(now - timedelta(seconds=1))
    waiting = await world.open_window(now + LONG)
    assert len(await world.index.claim_due(10, 30)) == 1

    await world.save(claimed.expire(CloseReason.WINDOW_ELAPSED, now))
    await world.save(waiting.record_payment(now, confirmed=True))

    assert await world.index.scheduled_ids() == set()
    assert await world.index.pending_count() == 0
    assert await world.index.next_due() is None
    snapshot = await world.index.snapshot(claimed.id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.reason, snapshot.version) == (
        Status.EXPIRED,
        CloseReason.WINDOW_ELAPSED.value,
        2,
    )


async def test_stale_put_does_not_overwrite_a_newer_one(world: World) -> None:
    now = await world.index.now()
    session = await world.open_window(now - timedelta(seconds=1))
    longer = await world.save(extended(session, now + LONG))

    await world.index.put(session)

    snapshot = await world.index.snapshot(session.id)
    assert snapshot is not None and snapshot.version == 2
    assert same_ms(snapshot.expires_at, longer.expires_at)
    assert await world.index.claim_due(10, 30) == []


async def test_forgotten_window_is_off_the_schedule(world: World) -> None:
    session = await world.open_window(await world.index.now() - timedelta(seconds=1))
    assert await world.index.pending_count() == 1

    await world.index.forget(session.id)

    assert await world.index.pending_count() == 0
    assert await world.index.claim_due(10, 30) == []


async def test_wait_for_wake_returns_on_a_wake_or_at_its_timeout(world: World) -> None:
    started = time.monotonic()
    await world.index.wait_for_wake(0.2)
    assert time.monotonic() - started >= 0.19

    waiting = asyncio.create_task(world.index.wait_for_wake(10))
    started = time.monotonic()
    # Wake until it hears one: a wake sent before the waiter listens is not its to hear.
    while not waiting.done() and time.monotonic() - started < 2:
        await world.index.wake()
        await asyncio.sleep(0.02)
    await asyncio.wait_for(waiting, 2)
    assert time.monotonic() - started < 2


async def test_concurrent_claimers_take_each_due_window_exactly_once(world: World) -> None:
    sessions = await world.open_windows(500, await world.index.now() - timedelta(seconds=1))
    claimers = [world.another_index() for _ in range(20)]

    async def claim_all(index: WindowIndex) -> list[str]:
        taken: list[str] = []
        while claims := await index.claim_due(7, 60):
            taken += [claim.session_id for claim in claims]
        return taken

    try:
        results = await asyncio.gather(*(claim_all(index) for index in claimers))
    finally:
        await asyncio.gather(*(index.close() for index in claimers))

    counts = Counter(session_id for taken in results for session_id in taken)
    assert set(counts) == {session.id for session in sessions}
    assert set(counts.values()) == {1}
    assert sum(1 for taken in results if taken) > 1  # the claimers really did share the work


BEHAVIOUR: list[Callable[[World], Awaitable[None]]] = [
    test_put_window_reads_back_as_its_snapshot,
    test_claim_takes_only_windows_due_by_the_index_clock,
    test_claimed_window_is_not_claimed_again_while_its_lease_holds,
    test_window_comes_back_when_its_lease_ends,
    test_released_claim_leaves_the_schedule,
    test_claim_given_back_is_due_again_at_its_retry_time,
    test_window_extended_while_claimed_is_due_only_at_its_new_deadline,
    test_closed_window_leaves_the_schedule,
    test_stale_put_does_not_overwrite_a_newer_one,
    test_forgotten_window_is_off_the_schedule,
    test_wait_for_wake_returns_on_a_wake_or_at_its_timeout,
    test_concurrent_claimers_take_each_due_window_exactly_once,
]


@pytest.mark.parametrize("behaviour", BEHAVIOUR, ids=lambda test: test.__name__[5:])
async def test_sql_index_on_sqlite(
    sqlite_world: World, behaviour: Callable[[World], Awaitable[None]]
) -> None:
    """The same behaviour from the embedded default store."""
    await behaviour(sqlite_world)


# -- reconcile ---------------------------------------------------------------------------


async def test_reconcile_reschedules_windows_the_index_lost(world: World) -> None:
    sessions = await world.open_windows(3, await world.index.now() + LONG)
    await world.index.forget(sessions[0].id)

    report = await reconcile(SqlReadModel(world.engine), world.index)

    assert report == ReconcileReport(added=1, updated=0, removed=0, unchanged=2)
    assert await world.index.scheduled_ids() == {session.id for session in sessions}


async def test_reconcile_drops_windows_closed_in_the_store_only(redis_world: World) -> None:
    world = redis_world
    now = await world.index.now()
    kept = await world.open_window(now + LONG)
    closed = await world.open_window(now + LONG)
    await world.store(closed.expire(CloseReason.ADMIN_TERMINATED, now))

    report = await reconcile(SqlReadModel(world.engine), world.index)

    assert report == ReconcileReport(added=0, updated=0, removed=1, unchanged=1)
    assert await world.index.scheduled_ids() == {kept.id}


async def test_reconcile_restores_a_flushed_redis(redis_world: World) -> None:
    world = redis_world
    now = await world.index.now()
    sessions = await world.open_windows(7, now + LONG)
    stale = await world.store(extended(sessions[0], now + 2 * LONG))
    closed = await world.open_window(now + LONG)
    await world.save(closed.expire(CloseReason.WINDOW_ELAPSED, now))
    client = redis.asyncio.Redis.from_url(world.settings.redis_url or "")
    try:
        keys = [key async for key in client.scan_iter(match=f"{world.settings.redis_prefix}*")]
        await client.delete(*keys)
    finally:
        await client.aclose()
    assert await world.index.scheduled_ids() == set()
    calls: list[tuple[int, int]] = []

    report = await reconcile(
        SqlReadModel(world.engine),
        world.index,
        page_size=3,
        progress=lambda *call: calls.append(call),
    )

    assert report == ReconcileReport(added=7, updated=0, removed=0, unchanged=0)
    assert await world.index.scheduled_ids() == {session.id for session in sessions}
    snapshot = await world.index.snapshot(stale.id)
    assert snapshot is not None and snapshot.version == 2
    assert same_ms(snapshot.expires_at, stale.expires_at)
    assert calls[-1] == (7, 7) and len(calls) == 3
    assert await reconcile(SqlReadModel(world.engine), world.index) == ReconcileReport(unchanged=7)


async def test_reconcile_corrects_stale_and_drops_unknown_windows(redis_world: World) -> None:
    world = redis_world
    now = await world.index.now()
    session = await world.open_window(now + LONG)
    stale = await world.store(extended(session, now + 2 * LONG))
    stray = new_session(now - timedelta(seconds=1))  # in the index, never in the store
    await world.index.put(stray)

    report = await reconcile(SqlReadModel(world.engine), world.index)

    assert report == ReconcileReport(added=0, updated=1, removed=1, unchanged=0)
    assert await world.index.scheduled_ids() == {session.id}
    assert await world.index.snapshot(stray.id) is None
    next_due = await world.index.next_due()
    assert next_due is not None and same_ms(next_due, stale.expires_at)


# -- Redis specifics -------------------------------------------------------------------------


class RecordingRedis(redis.asyncio.Redis):
    """A Redis client that remembers the commands it sent (pipelines aside)."""

    sent: list[tuple[Any, ...]]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(args)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def slot(key: str) -> int:
    """The Redis Cluster slot of a key (a standalone server refuses CLUSTER KEYSLOT)."""
    return key_slot(key.encode())


async def test_redis_keys_and_scripts_stay_within_one_slot(redis_settings: Settings) -> None:
    prefix = redis_settings.redis_prefix
    client = RecordingRedis.from_url(redis_settings.redis_url or "", decode_responses=True)
    assert isinstance(client, RecordingRedis)
    client.sent = []
    index = RedisWindowIndex(client, prefix)
    try:
        session = new_session(await index.now() - timedelta(seconds=1))
        await index.put(session)
        await index.claim_due(10, 30)
        await index.retry_at(session.id, await index.now())
        await index.put(session.expire(CloseReason.WINDOW_ELAPSED, datetime.now(UTC)))
        await index.forget(session.id)
    finally:
        await index.close()

    assert slot(due_key(prefix)) == slot(inflight_key(prefix))
    assert slot(window_key(prefix, session.id)) == slot(session.id)
    scripts = [args for args in client.sent if str(args[0]).upper() in {"EVALSHA", "EVAL"}]
    assert len(scripts) == 4
    for args in scripts:
        keys = [str(key) for key in args[3 : 3 + int(args[2])]]
        assert keys and all(key.startswith(prefix) for key in keys)
        assert len({slot(key) for key in keys}) == 1, keys


async def test_redis_open_window_costs_few_bytes(redis_world: World) -> None:
    world = redis_world
    count = 1000
    sessions = [new_session(await world.index.now() + LONG) for _ in range(count)]
    for session in sessions:
        await world.index.put(session)
    client = redis.asyncio.Redis.from_url(world.settings.redis_url or "", decode_responses=True)
    try:
        prefix = world.settings.redis_prefix
        hashes = [window_key(prefix, session.id) for session in sessions[:100]]
        hash_bytes = sum([await client.memory_usage(key, samples=0) or 0 for key in hashes])
        zset_bytes = await client.memory_usage(due_key(prefix), samples=0) or 0
        encoding = await client.object("encoding", hashes[0])
    finally:
        await client.aclose()

    per_window = hash_bytes / len(hashes) + zset_bytes / count
    print(
        f"\nRedis index: {per_window:.0f} bytes per open window "
        f"(hash {hash_bytes / len(hashes):.0f} + zset entry {zset_bytes / count:.0f}), "
        f"checkout URL of {len(CHECKOUT_URL)} chars"
    )
    assert encoding == "listpack"
    assert per_window < 500  # see the module docstring of redis_index for the budget
