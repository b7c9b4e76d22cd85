"""Redis goes away (killed, or hung by SIGSTOP) and comes back: nothing stops, nothing is late.

Real faults on a private redis-server: the worker keeps running, claims from the store while
Redis is unreachable, closes each window due meanwhile within seconds of its deadline and
exactly once, and the index agrees with the store again once Redis returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis.asyncio
from api_harness import api_settings
from conftest import with_stripe
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from redisserver import RedisServer
from seeding import closed_at, seed_windows
from sqlalchemy import select
from statsd import Metric, StatsdServer
from test_expiry_workers import Workers, assert_each_expired_exactly_once

from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.tables import payment_sessions
from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.expiry_loop import ExpiryLoop
from payment_window.runner import reconcile_index

pytestmark = pytest.mark.slow

# Generous for a loaded two-core box, and still far below the 30 s lease a fallback-less worker
# would wait (or forever, for a worker whose loop ended).
ON_TIME = timedelta(seconds=5)
OUTAGE_SECONDS = 30.0


@pytest.fixture
def outage_settings(
    pg_settings: Settings, redis_server: RedisServer, stripe: RunningStripe
) -> Settings:
    return with_stripe(pg_settings, stripe).model_copy(
        update={"redis_url": redis_server.url, "worker_max_sleep_seconds": 0.5}
    )


@pytest.fixture
async def container(outage_settings: Settings) -> AsyncIterator[Container]:
    await reconcile_index(outage_settings)  # a deployed index has been built once
    built = await bootstrap(outage_settings)
    yield built
    await built.close()


async def wait_closed(container: Container, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(moment is not None for moment in (await closed_at(container, ids)).values()):
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"windows still open {seconds} s later: {await closed_at(container, ids)}")


async def assert_on_time(container: Container, windows: list[object], late: timedelta) -> None:
    deadlines = {w.id: w.expires_at for w in windows}  # type: ignore[attr-defined]
    closed = await closed_at(container, list(deadlines))
    lateness = {i: closed[i] - deadlines[i] for i in deadlines}  # type: ignore[operator]
    assert all(timedelta(0) <= value < late for value in lateness.values()), lateness


async def open_ids(container: Container) -> set[str]:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(payment_sessions.c.id).where(payment_sessions.c.status == "open")
        )
        return {row.id for row in rows}


async def wait_index_agrees_with_store(container: Container, url: str, seconds: float) -> None:
    """Redis (restarted empty) schedules exactly the store's open windows again."""
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    index = RedisWindowIndex(client)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if await index.scheduled_ids() == await open_ids(container) and not (
                await index.needs_rebuild()
            ):
                return
            await asyncio.sleep(0.2)
        pytest.fail("the index was not rebuilt from the store after Redis came back")
    finally:
        await client.aclose()


async def wait_for_log(workers: Workers, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in workers.log_tail(200):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"no {text!r} in the worker's log:\n{workers.log_tail()}")


async def test_a_worker_process_claims_from_the_store_while_redis_is_down_and_resyncs_after(
    container: Container,
    outage_settings: Settings,
    redis_server: RedisServer,
    stripe: RunningStripe,
    tmp_path: Path,
) -> None:
    # The outage: 30 s, with windows falling due all through it.
    workers = Workers(outage_settings, tmp_path)
    workers.start(1)
    try:
        await wait_for_log(workers, "worker_started", 30)
        now = container.clock.now()
        during = await seed_windows(
            container, stripe, 9, deadline=now + timedelta(seconds=4), spread=timedelta(seconds=22)
        )
        after = await seed_windows(container, stripe, 4, deadline=now + timedelta(seconds=40))
        killed = time.monotonic()
        redis_server.kill()

        await wait_closed(container, [w.id for w in during], seconds=40)
        await assert_on_time(container, during, ON_TIME)
        assert workers.processes[0].poll() is None, "the worker exited during the outage"
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed)))
        assert workers.processes[0].poll() is None, "the worker exited during the outage"

        redis_server.start()  # empty, like a node that lost its memory
        await wait_index_agrees_with_store(container, redis_server.url, seconds=30)
        await wait_closed(container, [w.id for w in after], seconds=30)
        await assert_on_time(container, after, ON_TIME)
        assert workers.processes[0].poll() is None
    finally:
        assert workers.stop_all() == [0], workers.log_tail()
    await assert_each_expired_exactly_once(container, len(during) + len(after))
    await wait_index_agrees_with_store(container, redis_server.url, seconds=5)


async def test_an_in_process_worker_rides_out_a_redis_that_stops_answering(
    outage_settings: Settings, redis_server: RedisServer, stripe: RunningStripe
) -> None:
    with StatsdServer() as statsd:
        settings = outage_settings.model_copy(
            update={"dogstatsd_host": statsd.host, "dogstatsd_port": statsd.port}
        )
        await reconcile_index(settings)
        container = await bootstrap(settings)
        task = container.expiry_task()
        worker = ExpiryLoop(task, container.index, max_sleep_seconds=0.5)
        running = asyncio.create_task(worker.run())
        try:
            now = container.clock.now()
            due = await seed_windows(container, stripe, 5, deadline=now + timedelta(seconds=6))
            redis_server.pause()  # connections stay open, nothing answers

            await wait_closed(container, [w.id for w in due], seconds=25)
            await assert_on_time(container, due, ON_TIME)
            assert not running.done(), "the worker loop ended during the outage"
            # In a thread: the worker shares this event loop.
            await asyncio.to_thread(
                statsd.wait_for, lambda ms: any(_fallback(m) == 1 for m in ms), 10
            )

            redis_server.resume()
            await asyncio.to_thread(
                statsd.wait_for, lambda ms: any(_fallback(m) == 0 for m in ms), 20
            )
            later = await seed_windows(
                container, stripe, 3, deadline=container.clock.now() + timedelta(seconds=3)
            )
            await wait_closed(container, [w.id for w in later], seconds=25)
            assert not running.done()
        finally:
            redis_server.resume()
            task.stop()
            await asyncio.wait_for(running, 30)
        await assert_each_expired_exactly_once(container, len(due) + len(later))
        await wait_index_agrees_with_store(container, redis_server.url, seconds=10)
        await container.close()


def _fallback(metric: Metric) -> float | None:
    return metric.value if metric.name == "payments.window.index_fallback" else None


def test_the_first_requests_after_a_redis_restart_succeed_and_readiness_follows_redis(
    pg_settings: Settings, redis_server: RedisServer, stripe: RunningStripe
) -> None:
    settings = api_settings(pg_settings, stripe).model_copy(update={"redis_url": redis_server.url})
    token = mint_token(settings, "shop", "service")
    headers = {"Authorization": f"Bearer {token}"}

    def create(auction: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/payments/checkout",
            headers=headers,
            json={
                "auctionId": auction,
                "makerId": "mk-1",
                "buyerId": "by-1",
                "amount": 900,
                "currency": "usd",
            },
            timeout=30,
        )

    def readiness_becomes(status: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if httpx.get(f"{server.url}/readyz", timeout=10).status_code == status:
                return
            time.sleep(0.2)
        pytest.fail(f"/readyz did not answer {status}")

    with ThreadServer(create_app(settings)) as server:
        opened = create("auc-before")
        assert opened.status_code == 201, opened.text
        session_id = opened.json()["sessionId"]
        readiness_becomes(200)

        redis_server.kill()
        readiness_becomes(503)
        redis_server.start()

        # The pool's connections all died with the old server: the first requests on them
        # are retried on fresh ones, not answered with a 500.
        buyer = {"Authorization": f"Bearer {mint_token(settings, 'by-1', 'buyer')}"}
        status = httpx.get(
            f"{server.url}/payments/checkout/{session_id}/status", headers=buyer, timeout=30
        )
        assert status.status_code == 200, status.text
        again = create("auc-after")
        assert again.status_code == 201, again.text
        readiness_becomes(200)

        # A Redis that stops answering mid-request: the read gives up on it within seconds
        # (not redis-py's default 5 s a try, four tries) and answers from the store.
        redis_server.pause()
        try:
            started = time.monotonic()
            hung = httpx.get(
                f"{server.url}/payments/checkout/{session_id}/status", headers=buyer, timeout=60
            )
            elapsed = time.monotonic() - started
        finally:
            redis_server.resume()
        assert hung.status_code == 200, hung.text
        assert hung.json()["sessionId"] == session_id
        assert elapsed < 12, f"the status read took {elapsed:.1f} s"
