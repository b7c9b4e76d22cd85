"""PostgreSQL goes away (cut behind a TCP proxy) across windows' deadlines, and comes back.

The worker holds claims from the Redis index when the store fails under it: it gives them back
at once (never to its 5-minute hold), so each window due during the outage closes within
seconds of the store's return, exactly once. A row this version cannot read is set aside,
alerted and counted, and never holds the windows claimed with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import structlog
from conftest import with_stripe
from devstripe.testing import RunningStripe
from moments import until_index_time
from seeding import closed_at, seed_windows
from sqlalchemy import select, update
from statsd import StatsdServer
from tcpproxy import TcpProxy
from test_expiry_workers import assert_each_expired_exactly_once

from payment_window.adapters.tables import audit_log, outbox, payment_sessions
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.expiry_loop import ExpiryLoop
from payment_window.runner import reconcile_index

pytestmark = pytest.mark.slow

# The target: a window due during a store outage closes within 10 s of its return.
AFTER_RETURN = timedelta(seconds=10)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    running = TcpProxy.for_url(postgres_url).start()
    yield running
    running.stop()


@pytest.fixture
def proxied_settings(
    redis_settings: Settings, postgres_url: str, proxy: TcpProxy, stripe: RunningStripe
) -> Settings:
    return with_stripe(redis_settings, stripe).model_copy(
        update={
            "database_url": Settings(database_url=proxy.url(postgres_url)).database_url,
            "worker_max_sleep_seconds": 0.5,
            "database_connect_timeout_seconds": 2.0,
            "database_statement_timeout_seconds": 3.0,
        }
    )


@pytest.fixture
async def container(proxied_settings: Settings) -> AsyncIterator[Container]:
    await reconcile_index(proxied_settings)
    built = await bootstrap(proxied_settings)
    yield built
    await built.close()


async def wait_closed(container: Container, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if all(moment is not None for moment in (await closed_at(container, ids)).values()):
                return
        except Exception:  # the store is still coming back
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"windows still open {seconds} s later: {await closed_at(container, ids)}")


def loop_failures(logs: list[dict[str, object]]) -> int:
    return sum(1 for entry in logs if entry["event"] == "expiry_loop_failed")


async def until_loop_failures(logs: list[dict[str, object]], count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while loop_failures(logs) < count:
        assert time.monotonic() < deadline, f"{loop_failures(logs)} failed passes, not {count}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("fault", ["cut", "freeze"])
async def test_windows_due_during_a_store_outage_close_within_seconds_of_its_return(
    container: Container, proxy: TcpProxy, stripe: RunningStripe, fault: str
) -> None:
    task = container.expiry_task()
    worker = ExpiryLoop(task, container.index, max_sleep_seconds=0.5)
    running = asyncio.create_task(worker.run())
    try:
        now = container.clock.now()
        due = await seed_windows(
            container, stripe, 25, deadline=now + timedelta(seconds=2), spread=timedelta(seconds=2)
        )
        # cut: PostgreSQL is gone (failover, restart); freeze: it stops answering (SIGSTOP).
        with structlog.testing.capture_logs() as logs:
            getattr(proxy, fault)()
            # The deadlines pass during the outage; the worker claims them from Redis and the
            # store fails under it, pass after pass: wait until two passes failed after the
            # last deadline.
            await until_index_time(container.index, max(window.expires_at for window in due))
            failed_before = loop_failures(logs)
            await until_loop_failures(logs, failed_before + 2, seconds=60)
        assert not running.done(), "the worker loop ended during the outage"
        proxy.restore()
        returned = container.clock.now()

        await wait_closed(container, [w.id for w in due], seconds=AFTER_RETURN.total_seconds())
        closed = await closed_at(container, [w.id for w in due])
        late = {i: moment - returned for i, moment in closed.items() if moment is not None}
        assert all(value < AFTER_RETURN for value in late.values()), late
        print(f"{fault}: closed at most {max(late.values()).total_seconds():.2f} s after return")
        assert container.index.held == 0  # type: ignore[attr-defined]
    finally:
        proxy.restore()
        task.stop()
        await asyncio.wait_for(running, 30)
    await assert_each_expired_exactly_once(container, len(due))


async def test_an_unreadable_row_is_set_aside_alerted_and_counted_and_holds_no_other_window(
    redis_settings: Settings, stripe: RunningStripe
) -> None:
    with StatsdServer() as statsd:
        settings = with_stripe(redis_settings, stripe).model_copy(
            update={"dogstatsd_host": statsd.host, "dogstatsd_port": statsd.port}
        )
        await reconcile_index(settings)
        container = await bootstrap(settings)
        try:
            due = await seed_windows(container, stripe, 8)
            newer = due[3]
            # A newer version, mid rolling deploy, wrote a status this one does not know.
            async with container.engine.begin() as connection:
                await connection.execute(
                    update(payment_sessions)
                    .where(payment_sessions.c.id == newer.id)
                    .values(status="refunded")
                )
            report = await container.expiry_task().run_pass()

            assert report.expired == 7
            assert report.set_aside == 1
            others = [w.id for w in due if w.id != newer.id]
            assert all(
                moment is not None for moment in (await closed_at(container, others)).values()
            )
            async with container.engine.connect() as connection:
                row = (
                    await connection.execute(
                        select(payment_sessions.c.status).where(payment_sessions.c.id == newer.id)
                    )
                ).one()
                assert row.status == "refunded"  # untouched
                alert = (
                    await connection.execute(
                        select(outbox.c.destination, outbox.c.payload).where(
                            outbox.c.event_type == "operations.window_unreadable"
                        )
                    )
                ).all()
                audited = (
                    await connection.execute(
                        select(audit_log.c.details).where(audit_log.c.session_id == newer.id)
                    )
                ).all()
            assert len(alert) == 1
            assert alert[0].destination == "operations"
            assert alert[0].payload["sessionId"] == newer.id
            assert alert[0].payload["storedStatus"] == "refunded"
            assert [a.details["alert"] for a in audited] == ["window_unreadable"]
            assert newer.id not in await container.index.scheduled_ids()
            await asyncio.to_thread(
                statsd.wait_for,
                lambda ms: any(m.name == "payments.window.unreadable" for m in ms),
                10,
            )
            # Set aside once: the next pass neither claims nor alerts it again.
            again = await container.expiry_task().run_pass()
            assert again.claimed == 0 and again.set_aside == 0
        finally:
            await container.close()


async def test_the_store_records_no_expiry_failure_on_a_closed_window(
    redis_settings: Settings, stripe: RunningStripe
) -> None:
    container = await bootstrap(with_stripe(redis_settings, stripe))
    try:
        (window,) = await seed_windows(container, stripe, 1)
        assert (await container.expiry_task().run_pass()).expired == 1
        async with container.uow() as uow:
            assert await uow.sessions.record_expiry_failure(window.id, "late error") == 0
            await uow.commit()
        async with container.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        payment_sessions.c.expiry_attempts, payment_sessions.c.last_expiry_error
                    ).where(payment_sessions.c.id == window.id)
                )
            ).one()
        assert (row.expiry_attempts, row.last_expiry_error) == (0, None)
    finally:
        await container.close()
