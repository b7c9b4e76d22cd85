"""Expiry lateness: how long after its deadline a window is recorded expired.

Windows fall due at 100 per second — for 25 s here, not a whole minute, to keep the run short —
and 2 `payment-window worker` processes close them (PostgreSQL, a private Redis, the local Stripe
server as its own process). Lateness is `expired_at - expires_at` from the store.

Baseline, the EventBridge-only design (a pass once a minute), is computed analytically from the
same deadlines: each window waits for the next whole-minute tick, plus the measured duration of
one `payment-window expire-due` pass (a fresh process, as a Lambda invocation) over as many due
windows as this run has.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
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
    percentile,
    pg_schema,
    progress,
    run,
    seed_windows,
    settings_env,
    start_devstripe,
    start_redis,
    wait_for_log,
    write_result,
)
from sqlalchemy import text

from payment_window.bootstrap import bootstrap

RATE = 100  # windows falling due per second
SECONDS = int(os.environ.get("BENCH_LATENESS_SECONDS", "25"))
WORKERS = 2
TARGET_P99 = 1.0
TARGET_RATIO = 30.0


async def worker_lateness(processes: Processes, redis_url: str, stripe_url: str) -> list[float]:
    count = RATE * SECONDS
    async with pg_schema("bench_late") as schema:
        settings = bench_settings(schema, redis_url, stripe_url, redis_prefix="late:")
        container = await bootstrap(settings)
        try:
            await container.index.mark_rebuilt()
            env = settings_env(settings)
            for number in range(WORKERS):
                command = [PYTHON, "-m", "payment_window", "worker"]
                processes.start(f"lateness-worker-{number}", command, env=env)
            for number in range(WORKERS):
                wait_for_log(processes.logs / f"lateness-worker-{number}.log", "worker_started")
            first = datetime.now(UTC) + timedelta(seconds=6)
            progress(f"  seeding {count} windows due from {first:%H:%M:%S} over {SECONDS} s")
            await seed_windows(
                container,
                stripe_url,
                count,
                first_deadline=first,
                spread=timedelta(seconds=SECONDS - 1 / RATE),
            )
            await container.index.wake()
            deadline = time.monotonic() + 6 + SECONDS + 60
            while (left := await open_count(container)) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{left} windows still open")
                progress(f"  {count - left}/{count} expired")
                await asyncio.sleep(2)
            async with container.engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT EXTRACT(EPOCH FROM expired_at - expires_at), "
                        "EXTRACT(EPOCH FROM expires_at) FROM payment_sessions"
                    )
                )
                pairs = [(float(late), float(due)) for late, due in rows]
        finally:
            await container.close()
    global DEADLINES
    DEADLINES = [due for _, due in pairs]
    return [late for late, _ in pairs]


DEADLINES: list[float] = []


async def pass_duration(processes: Processes, redis_url: str, stripe_url: str) -> float:
    """Wall time of one `payment-window expire-due` process over RATE * SECONDS due windows."""
    count = RATE * SECONDS
    async with pg_schema("bench_pass") as schema:
        settings = bench_settings(schema, redis_url, stripe_url, redis_prefix="pass:")
        container = await bootstrap(settings)
        try:
            sessions = await seed_windows(
                container,
                stripe_url,
                count,
                first_deadline=datetime.now(UTC) - timedelta(seconds=1),
                index=False,
            )
            fill_index(redis_url, "pass:", sessions)
            await container.index.mark_rebuilt()
            started = time.perf_counter()
            done = await asyncio.to_thread(
                subprocess.run,
                [PYTHON, "-m", "payment_window", "expire-due"],
                env=settings_env(settings),
                capture_output=True,
                timeout=150,
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0 or await open_count(container):
                raise RuntimeError(f"expire-due failed: {done.stderr.decode()[-2000:]}")
        finally:
            await container.close()
    return elapsed


async def main() -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="bench-lateness-"))
    with Processes(logs) as processes:
        progress(
            f"lateness: {RATE}/s for {SECONDS} s (shortened from a minute), {WORKERS} workers; "
            f"logs in {logs}"
        )
        stripe_url = start_devstripe(processes)
        redis_url, _ = start_redis(processes)
        late = await worker_lateness(processes, redis_url, stripe_url)
        progress("once-a-minute baseline: timing one expire-due pass")
        pass_seconds = await pass_duration(processes, redis_url, stripe_url)
    # EventBridge rate(1 minute) fires on whole minutes; a window due exactly on a tick waits
    # for the next one only if the pass already started, so ceil() is the generous reading.
    minute = [math.ceil(due / 60) * 60 - due + pass_seconds for due in DEADLINES]
    worker = {q: percentile(late, q) for q in (50, 99, 100)}
    batch = {q: percentile(minute, q) for q in (50, 99, 100)}
    ratio = batch[99] / max(worker[99], 1e-3)
    result = {
        "windows": len(late),
        "rate_per_second": RATE,
        "seconds": SECONDS,
        "shortened": f"deadlines over {SECONDS} s instead of a minute",
        "workers": WORKERS,
        "worker_lateness_seconds": {"p50": worker[50], "p99": worker[99], "max": worker[100]},
        "once_a_minute_lateness_seconds": {"p50": batch[50], "p99": batch[99], "max": batch[100]},
        "once_a_minute_method": "analytic: next whole-minute tick after each deadline + the "
        "measured wall time of one `expire-due` process over the same number of windows",
        "expire_due_pass_seconds": round(pass_seconds, 3),
        "ratio": round(ratio, 1),
        "target": f"p99 <= {TARGET_P99} s and >= {TARGET_RATIO:.0f}x better than once a minute",
        "met": worker[99] <= TARGET_P99 and ratio >= TARGET_RATIO,
        "load_average": os.getloadavg(),
    }
    print(f"ratio (once-a-minute p99 / worker p99): {ratio:.1f}x")
    print(
        f"workers:       p50={worker[50]:.3f}s p99={worker[99]:.3f}s max={worker[100]:.3f}s "
        f"({len(late)} windows, {RATE}/s over {SECONDS} s — shortened from a minute)"
    )
    print(
        f"once a minute: p50={batch[50]:.1f}s p99={batch[99]:.1f}s max={batch[100]:.1f}s "
        f"(analytic ticks + measured expire-due pass of {pass_seconds:.1f} s)"
    )
    verdict = "met" if result["met"] else "MISSED"
    print(f"target p99 <= {TARGET_P99} s, >= {TARGET_RATIO:.0f}x: {verdict}")
    write_result("lateness", result)
    return result


if __name__ == "__main__":
    run(main())
