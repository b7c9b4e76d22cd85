"""Many real worker processes over thousands of due windows, with kills and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import settings_env, with_stripe
from devstripe.testing import RunningStripe
from seeding import seed_windows
from sqlalchemy import func, select, text

from payment_window.adapters.tables import audit_log, outbox, payment_sessions
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings

pytestmark = pytest.mark.slow


class Workers:
    """`payment-window worker` processes sharing one store, index and Stripe."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.env = settings_env(settings)
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            log = (self.logs / f"worker-{len(self.processes)}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "payment_window", "worker"],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(
            f"{path.name}: " + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted(self.logs.glob("worker-*.log"))
        )

    def kill_one(self) -> None:
        """A worker dies mid-batch without a chance to clean up (kill -9)."""
        victim = next(p for p in self.processes if p.poll() is None)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    def stop_all(self) -> list[int]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return [process.wait(timeout=30) for process in self.processes]


@pytest.fixture
def worker_settings(redis_settings: Settings, stripe: RunningStripe) -> Settings:
    return with_stripe(redis_settings, stripe).model_copy(
        update={"claim_lease_seconds": 3.0, "worker_max_sleep_seconds": 0.5}
    )


@pytest.fixture
def workers(worker_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(worker_settings, tmp_path)
    yield running
    running.stop_all()
    print(running.log_tail())


@pytest.fixture
async def seeder(worker_settings: Settings) -> AsyncIterator[Container]:
    container = await bootstrap(worker_settings)
    yield container
    await container.close()


async def count_expired(container: Container) -> int:
    async with container.engine.connect() as connection:
        expired = await connection.scalar(
            select(func.count())
            .select_from(payment_sessions)
            .where(payment_sessions.c.status == "expired")
        )
    return int(expired or 0)


async def wait_until_all_closed(container: Container, total: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with container.engine.connect() as connection:
        while time.monotonic() < deadline:
            still_open = await connection.scalar(
                select(func.count())
                .select_from(payment_sessions)
                .where(payment_sessions.c.status == "open")
            )
            await connection.rollback()
            if still_open == 0:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"windows still open after {seconds} s")


async def assert_each_expired_exactly_once(container: Container, total: int) -> None:
    async with container.engine.connect() as connection:
        statuses = dict(
            (
                await connection.execute(
                    select(payment_sessions.c.status, func.count()).group_by(
                        payment_sessions.c.status
                    )
                )
            ).all()
        )
        assert statuses == {"expired": total}
        audits = (
            await connection.execute(
                select(audit_log.c.session_id, func.count()).group_by(audit_log.c.session_id)
            )
        ).all()
        assert len(audits) == total
        assert {count for _, count in audits} == {1}
        events = (
            await connection.execute(
                select(outbox.c.session_id, func.count()).group_by(outbox.c.session_id)
            )
        ).all()
        assert len(events) == total
        assert {count for _, count in events} == {4}
        early = await connection.scalar(
            select(func.count())
            .select_from(payment_sessions)
            .where(payment_sessions.c.expired_at < payment_sessions.c.expires_at)
        )
        assert early == 0, "a window was expired before its deadline"


async def lateness_seconds(container: Container) -> list[float]:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT EXTRACT(EPOCH FROM expired_at - expires_at) FROM payment_sessions")
        )
        return sorted(float(row[0]) for row in rows)


async def test_eight_workers_expire_five_thousand_windows_exactly_once(
    seeder: Container, workers: Workers, stripe: RunningStripe
) -> None:
    total = int(os.environ.get("PW_TEST_WORKER_WINDOWS", "5000"))
    # Deadlines spread over the run, so workers race windows that fall due as they go.
    start = seeder.clock.now() + timedelta(seconds=5)
    await seed_windows(seeder, stripe, total, deadline=start, spread=timedelta(seconds=5))
    stripe.reset_calls()

    workers.start(8)
    await wait_until_all_closed(seeder, total, seconds=180)
    assert workers.stop_all() == [0] * 8

    await assert_each_expired_exactly_once(seeder, total)
    assert stripe.calls("/expire") == total
    lateness = await lateness_seconds(seeder)
    p50, p99 = lateness[len(lateness) // 2], lateness[int(len(lateness) * 0.99)]
    print(f"lateness p50={p50:.3f}s p99={p99:.3f}s")


async def test_workers_killed_mid_batch_lose_nothing_and_expire_nothing_twice(
    seeder: Container, workers: Workers, stripe: RunningStripe
) -> None:
    total = 1500
    await seed_windows(seeder, stripe, total)
    stripe.delay_next(0.01, n=total)  # long enough batches that a kill lands inside one

    workers.start(3)
    for _ in range(4):
        await asyncio.sleep(0.8)
        workers.kill_one()
        workers.start(1)
    await wait_until_all_closed(seeder, total, seconds=120)
    workers.stop_all()

    await assert_each_expired_exactly_once(seeder, total)


async def test_sigterm_finishes_the_window_in_hand_and_gives_the_rest_back(
    worker_settings: Settings, stripe: RunningStripe, tmp_path: Path
) -> None:
    settings = worker_settings.model_copy(
        update={"claim_lease_seconds": 600.0, "expiry_batch_size": 10}
    )
    container = await bootstrap(settings)
    try:
        total = 300
        await seed_windows(container, stripe, total)
        stripe.delay_next(0.5, n=total)
        workers = Workers(settings, tmp_path)
        workers.start(1)
        # Stop it once it is working through its batch (some closed, most still claimed).
        deadline = asyncio.get_running_loop().time() + 30
        while await count_expired(container) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the worker never started"
            await asyncio.sleep(0.1)

        assert workers.stop_all() == [0]

        # With a ten-minute lease, anything still claimed would be stuck; released claims are
        # due again at once.
        report = await container.expiry_task().run_pass()
        assert report.expired > 0
        await wait_until_all_closed(container, total, seconds=5)
        await assert_each_expired_exactly_once(container, total)
    finally:
        await container.close()
