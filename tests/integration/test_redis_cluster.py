"""The Redis window index on a real 3-master Redis Cluster: no CROSSSLOT, nothing lost.

`PW_REDIS_URL=redis+cluster://host:port` selects the cluster client (any node will do).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from conftest import with_stripe
from devstripe.testing import RunningStripe
from seeding import seed_windows
from test_expiry_workers import Workers, assert_each_expired_exactly_once, wait_until_all_closed

from payment_window.adapters.index_factory import create_window_index
from payment_window.adapters.ratelimit import RedisStripeBudget
from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.bootstrap import bootstrap
from payment_window.config import Settings
from payment_window.domain.session import CloseReason, PaymentSession
from payment_window.domain.stripe_calls import CallClass

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    # A cluster node also listens on port + 10000 (the bus): both must be free.
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 < 65536 and port not in ports:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            ports.append(port)
    return ports


def _cluster_state(client: redis.Redis) -> str:
    info = client.cluster("info")
    if isinstance(info, dict):
        return str(info.get("cluster_state", b"")).strip("b'")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "ok" if "cluster_state:ok" in text else "fail"


@pytest.fixture
def redis_cluster(tmp_path: Path, unavailable: Callable[[str], NoReturn]) -> Iterator[str]:
    """Three masters on loopback, no replicas; its `redis+cluster://` URL."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server and redis-cli are needed for a cluster")
    ports = _free_ports(3)
    nodes = []
    try:
        for port in ports:
            nodes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(tmp_path / f"nodes-{port}.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--dir",
                        str(tmp_path),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
        for port in ports:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            client.close()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for port in ports:
            client = redis.Redis(port=port)
            while _cluster_state(client) != "ok":
                assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
                time.sleep(0.1)
            client.close()
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


@pytest.fixture
def cluster_settings(pg_settings: Settings, redis_cluster: str) -> Settings:
    return pg_settings.model_copy(update={"redis_url": redis_cluster, "redis_prefix": "c:"})


@pytest.fixture
async def cluster_index(
    cluster_settings: Settings,
) -> AsyncIterator[RedisWindowIndex]:
    index = create_window_index(cluster_settings, engine=None)  # type: ignore[arg-type]
    assert isinstance(index, RedisWindowIndex)
    yield index
    await index.close()


def _window(number: int, expires_at: datetime, version: int = 1) -> PaymentSession:
    return PaymentSession(
        id=f"pw_cluster_{number:04d}",
        auction_id=f"auc_{number}",
        maker_id="mk_1",
        buyer_id=f"by_{number}",
        amount=1000,
        currency="eur",
        expires_at=expires_at.replace(microsecond=0),
        created_at=expires_at,
        updated_at=expires_at,
        version=version,
        checkout_url="http://127.0.0.1:12111/c/pay/cs_test_" + "x" * 58,
    )


async def test_index_operations_work_across_the_cluster_slots(
    cluster_index: RedisWindowIndex,
) -> None:
    index = cluster_index
    now = await index.now()
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5
    assert await index.needs_rebuild()
    await index.mark_rebuilt()
    assert not await index.needs_rebuild()

    # Windows whose keys hash to many different slots (and so nodes).
    due = [_window(n, now - timedelta(seconds=5)) for n in range(40)]
    later = _window(99, now + timedelta(hours=1))
    for session in [*due, later]:
        await index.put(session)
    assert await index.pending_count() == 41
    assert await index.scheduled_ids() == {s.id for s in [*due, later]}
    snapshot = await index.snapshot(due[0].id)
    assert snapshot is not None and snapshot.checkout_url == due[0].checkout_url
    assert await index.next_due() == due[0].expires_at

    claims = await index.claim_due(25, 30.0)
    assert len(claims) == 25
    rest = await index.claim_due(100, 30.0)
    assert {c.session_id for c in [*claims, *rest]} == {s.id for s in due}
    assert await index.claim_due(100, 30.0) == []

    await index.retry_at(claims[0].session_id, now - timedelta(seconds=1))
    again = await index.claim_due(10, 30.0)
    assert [c.session_id for c in again] == [claims[0].session_id]
    await index.release(claims[0].session_id)

    expired = [s.expire(CloseReason.WINDOW_ELAPSED, now) for s in due[1:]]
    await index.settle_many(expired)
    assert await index.pending_count() == 1  # only the later window is still scheduled
    settled = await index.snapshot(due[1].id)
    assert settled is not None and settled.status.value == "expired"

    await index.forget(later.id)
    assert await index.snapshot(later.id) is None
    assert await index.pending_count() == 0

    # Wake-ups travel over cluster pub/sub (PUBLISH is broadcast to every node).
    # A wake sent before the waiter's subscription is in place is not heard (by design: a
    # worker reads the schedule after subscribing), so wake until one is heard.
    waiter = asyncio.create_task(index.wait_for_wake(10.0))
    started = time.monotonic()
    while not waiter.done():
        assert time.monotonic() - started < 5, "no wake-up reached the waiter"
        await index.wake()
        await asyncio.wait([waiter], timeout=0.1)
    await waiter  # ended by a wake-up: its own timeout is 10 s


async def test_the_stripe_budget_limiter_works_on_the_cluster(
    cluster_index: RedisWindowIndex,
) -> None:
    limiter = RedisStripeBudget(
        cluster_index._client,  # type: ignore[arg-type]
        "c:",
        per_second=20.0,
    )
    started = time.monotonic()
    for number in range(11):
        await limiter.acquire(CallClass.BUYER if number % 2 else CallClass.BACKGROUND)
    # 11 calls at 20/s with a burst of one: at least 10 intervals of 50 ms.
    assert time.monotonic() - started >= 0.45


async def test_two_workers_on_the_cluster_expire_each_window_exactly_once(
    cluster_settings: Settings, stripe: RunningStripe, tmp_path: Path
) -> None:
    settings = with_stripe(cluster_settings, stripe).model_copy(
        update={"claim_lease_seconds": 5.0, "worker_max_sleep_seconds": 0.5}
    )
    container = await bootstrap(settings)
    workers = Workers(settings, tmp_path)
    try:
        total = 500
        await container.index.pending_count()  # the cluster client learns the slots first
        start = container.clock.now() + timedelta(seconds=3)
        await seed_windows(container, stripe, total, deadline=start, spread=timedelta(seconds=2))
        stripe.reset_calls()
        workers.start(2)
        await wait_until_all_closed(container, total, 120)
        assert workers.stop_all() == [0, 0]
        await assert_each_expired_exactly_once(container, total)
        assert stripe.calls("/expire") == total
        logs = workers.log_tail(10_000)
        assert "CROSSSLOT" not in logs
        assert await container.index.pending_count() == 0
    finally:
        workers.stop_all()
        await container.close()
