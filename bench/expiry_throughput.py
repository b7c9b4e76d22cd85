"""Expiry throughput: 20,000 due windows closed by 1, 2 and 4 worker processes.

Baseline: the same number of rows closed by one set-based SQL statement (UPDATE … RETURNING,
then INSERT … SELECT for the audit entries and 4 outbox rows per window) — the floor for the
database work, with no Stripe call and no index at all.

Each run: a fresh schema and Redis prefix; Stripe sessions come from devstripe's bulk seed and
rows from multi-row inserts; the workers start and report ready before the index is filled (in
one pipelined write), and the clock runs from that fill to the last `expired_at`. Stripe calls
per window come from devstripe's `/_test/calls`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    Processes,
    bench_settings,
    fill_index,
    open_count,
    pg_schema,
    progress,
    run,
    seed_windows,
    settings_env,
    start_devstripe,
    start_redis,
    stripe_calls,
    wait_for_log,
    write_result,
)
from sqlalchemy import text

from payment_window.bootstrap import bootstrap

WINDOWS = int(os.environ.get("BENCH_THROUGHPUT_WINDOWS", "5000"))
WORKER_COUNTS = [int(n) for n in os.environ.get("BENCH_THROUGHPUT_WORKERS", "1,2,4").split(",")]
TARGET_PER_SECOND = 1000.0
RUN_TIMEOUT = 120.0

SET_BASED = """
WITH closed AS (
  UPDATE payment_sessions
     SET status = 'expired', reason = 'window_elapsed', expired_at = now(),
         version = version + 1, updated_at = now(), due_at = NULL, lease_until = NULL
   WHERE status = 'open' AND expires_at <= now()
  RETURNING id, auction_id, maker_id, buyer_id, amount, currency, expires_at, expired_at,
            checkout_session_id
), audit AS (
  INSERT INTO audit_log (session_id, action, actor, from_status, to_status, details, at)
  SELECT id, 'payment_expired', 'system:expiry', 'open', 'expired',
         json_build_object('reason', 'window_elapsed', 'expiresAt', expires_at,
                           'checkoutSessionId', checkout_session_id), expired_at
    FROM closed
)
INSERT INTO outbox (id, session_id, destination, event_type, payload, attempts,
                    next_attempt_at, created_at)
SELECT gen_random_uuid()::text, c.id, d.destination, d.event_type,
       json_build_object('sessionId', c.id, 'auctionId', c.auction_id, 'makerId', c.maker_id,
                         'buyerId', c.buyer_id, 'amount', c.amount, 'currency', c.currency,
                         'reason', 'window_elapsed', 'expiresAt', c.expires_at,
                         'expiredAt', c.expired_at),
       0, c.expired_at, c.expired_at
  FROM closed c
 CROSS JOIN (VALUES ('maker', 'payment_window.expired'), ('buyer', 'payment_window.expired'),
                    ('analytics', 'payments.checkout.expired'),
                    ('auction', 'auction.relist_requested')) AS d(destination, event_type)
"""


async def set_based_floor(processes: Processes, stripe_url: str) -> dict[str, Any]:
    async with pg_schema("bench_floor") as schema:
        settings = bench_settings(schema, None, stripe_url)
        container = await bootstrap(settings)
        try:
            await seed_windows(
                container,
                stripe_url,
                WINDOWS,
                first_deadline=datetime.now(UTC) - timedelta(seconds=1),
                index=False,
            )
            async with container.engine.begin() as connection:
                await connection.execute(text("ANALYZE payment_sessions"))
            started = time.perf_counter()
            async with container.engine.begin() as connection:
                await connection.execute(text(SET_BASED))
            elapsed = time.perf_counter() - started
            async with container.engine.connect() as connection:
                audits = await connection.scalar(text("SELECT count(*) FROM audit_log"))
                events = await connection.scalar(text("SELECT count(*) FROM outbox"))
            assert audits == WINDOWS and events == 4 * WINDOWS, (audits, events)
        finally:
            await container.close()
    return {"seconds": round(elapsed, 3), "windows_per_second": round(WINDOWS / elapsed, 1)}


async def with_workers(
    processes: Processes, redis_url: str, stripe_url: str, workers: int, logs: Path
) -> dict[str, Any]:
    async with pg_schema(f"bench_w{workers}") as schema:
        prefix = f"tp{workers}:"
        settings = bench_settings(
            schema, redis_url, stripe_url, redis_prefix=prefix, worker_max_sleep_seconds=0.5
        )
        container = await bootstrap(settings)
        started_workers = []
        try:
            progress(f"  seeding {WINDOWS} due windows (store and Stripe)")
            # Due a little after seeding: the worker's start-up sweep re-indexes windows only
            # when they are over SWEEP_GRACE (10 s) late, so it stays out of this measurement.
            deadline = datetime.now(UTC) + timedelta(seconds=6)
            sessions = await seed_windows(
                container, stripe_url, WINDOWS, first_deadline=deadline, index=False
            )
            # The index is "built": workers must not reconcile it from the store at start.
            await container.index.mark_rebuilt()
            httpx_reset(stripe_url)
            env = settings_env(settings)
            for number in range(workers):
                name = f"throughput-{workers}w-{number}"
                started_workers.append(
                    processes.start(name, [PYTHON, "-m", "payment_window", "worker"], env=env)
                )
            for number in range(workers):
                wait_for_log(logs / f"throughput-{workers}w-{number}.log", "worker_started")
            await asyncio.sleep(0.5)
            profiler = None
            if os.environ.get("BENCH_PROFILE"):
                # py-spy on the first worker, collapsed stacks for `bench/profile_top.py`.
                out = logs / f"profile-{workers}w.txt"
                profiler = processes.start(
                    f"py-spy-{workers}w",
                    [str(Path(PYTHON).parent / "py-spy"), "record", "--pid",
                     str(started_workers[0].pid), "--format", "raw", "--rate", "250",
                     "--nonblocking", "-o", str(out)],
                )  # fmt: skip
                await asyncio.sleep(1.0)
            if (wait := (deadline - datetime.now(UTC)).total_seconds()) > 0:
                await asyncio.sleep(wait + 0.05)
            progress(f"  {workers} worker(s) ready; filling the index")
            began = datetime.now(UTC)
            t0 = time.perf_counter()
            await asyncio.to_thread(fill_index, redis_url, prefix, sessions)
            shown = time.perf_counter()
            timed_out = False
            while (left := await open_count(container)) > 0:
                if time.perf_counter() - t0 > RUN_TIMEOUT:
                    # Reported as the pace reached, not raised: a slow run is a result too.
                    progress(f"  {left} windows still open after {RUN_TIMEOUT:.0f} s")
                    timed_out = True
                    break
                if time.perf_counter() - shown > 2:
                    shown = time.perf_counter()
                    progress(f"  {WINDOWS - left}/{WINDOWS} closed")
                await asyncio.sleep(0.1)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            for process in started_workers:
                processes.stop(process)
            async with container.engine.connect() as connection:
                last = await connection.scalar(text("SELECT max(expired_at) FROM payment_sessions"))
                closed = WINDOWS - await open_count(container)
                audits = await connection.scalar(
                    text(
                        "SELECT count(DISTINCT session_id) = count(*) AND count(*) = :n "
                        "FROM audit_log"
                    ),
                    {"n": closed},
                )
                events = await connection.scalar(text("SELECT count(*) FROM outbox"))
        finally:
            for process in started_workers:
                processes.stop(process)
            await container.close()
    elapsed = (last - began).total_seconds()
    calls = stripe_calls(stripe_url)
    expire_calls = sum(n for key, n in calls.items() if key.endswith("/expire"))
    return {
        "workers": workers,
        "closed": closed,
        "timed_out": timed_out,
        "seconds": round(elapsed, 3),
        "windows_per_second": round(closed / elapsed, 1),
        "stripe_distinct_requests": len(calls),
        "stripe_expire_calls_per_window": round(expire_calls / closed, 4),
        "stripe_calls_per_window": round(sum(calls.values()) / closed, 4),
        "audit_exactly_once": bool(audits),
        "outbox_rows_per_window": events / closed,
    }


def httpx_reset(stripe_url: str) -> None:
    import httpx

    httpx.delete(f"{stripe_url}/_test/calls", timeout=10).raise_for_status()


async def main() -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    with Processes(logs) as processes:
        progress(f"expiry_throughput: {WINDOWS} windows; logs in {logs}")
        stripe_url = start_devstripe(processes)
        redis_url, _ = start_redis(processes)
        progress("baseline: one set-based SQL statement")
        floor = await set_based_floor(processes, stripe_url)
        progress(f"  floor: {floor['windows_per_second']:.0f} windows/s")
        runs = []
        for workers in WORKER_COUNTS:
            progress(f"{workers} worker process(es)")
            result = await with_workers(processes, redis_url, stripe_url, workers, logs)
            progress(
                f"  {result['windows_per_second']:.0f} windows/s, "
                f"{result['stripe_expire_calls_per_window']} Stripe expire calls/window"
            )
            runs.append(result)
    best = max(runs, key=lambda r: r["windows_per_second"])
    ratio = best["windows_per_second"] / floor["windows_per_second"]
    calls_ok = all(r["stripe_expire_calls_per_window"] == 1.0 for r in runs)
    result = {
        "windows": WINDOWS,
        "baseline": {"name": "one set-based SQL statement (database floor)", **floor},
        "runs": runs,
        "best_windows_per_second": best["windows_per_second"],
        "ratio_to_floor": round(ratio, 3),
        "target": f">= {TARGET_PER_SECOND:.0f} windows/s, 1 Stripe expire call per window",
        "met": best["windows_per_second"] >= TARGET_PER_SECOND and calls_ok,
        "how": "devstripe (httptools) and a private redis-server as child processes, PostgreSQL "
        "schema of its own; workers ready before the index is filled in one pipeline; clock "
        "from that fill to the last expired_at",
    }
    print(f"ratio (best workers / set-based floor): {ratio:.3f}")
    print(f"set-based floor: {floor['windows_per_second']:.0f} windows/s ({floor['seconds']} s)")
    for r in runs:
        print(
            f"{r['workers']} worker(s): {r['windows_per_second']:.0f} windows/s "
            f"({r['seconds']} s), Stripe expire calls/window {r['stripe_expire_calls_per_window']}"
        )
    print(f"target >= {TARGET_PER_SECOND:.0f}/s: {'met' if result['met'] else 'MISSED'}")
    write_result("expiry_throughput", result)
    return result


if __name__ == "__main__":
    run(main())
