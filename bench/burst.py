"""A burst: 1,000 windows due in the same second, closed at the pace of the Stripe budget.

Two `payment-window worker` processes (PostgreSQL, a private Redis, the local Stripe server as
its own process) close every window; `PW_STRIPE_RPS` is the budget, shared by both
through Redis. The windows are seeded as the other benchmarks seed them (`seed_windows`, all
with one deadline a few seconds ahead). Ranked by the recorded `expired_at`, the k-th window
(k from 0) cannot close before `k / budget` after the deadline: that is its floor, and the
benchmark reports `lateness_k - k / budget` (target: within 1 s for every window) and the drain
time over its floor, `total / (windows / budget)`.

While the burst drains, an admin extends a still-open window of the burst every 50 ms (in this
process, through the service: it locks the row, then answers 409 `window_elapsed`). Each
extension waits for at most the one Stripe call a worker makes under that row's lock, so they
all answer within a small time; a lock held across several budgeted calls would show as waits
of several budget intervals.
"""

from __future__ import annotations

import asyncio
import os
import random
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
    open_count,
    percentile,
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
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import WindowElapsed, WindowNotOpen

WORKERS = 2
WINDOWS = int(os.environ.get("BENCH_BURST_WINDOWS", "1000"))
BUDGETS = tuple(float(b) for b in os.environ.get("BENCH_BURST_BUDGETS", "100,20").split(","))
# The control run: the same burst with no budget to speak of, so the pipeline's own pace on this
# host at this moment (other work shares its 2 cores) is measured beside the budgeted runs.
UNLIMITED = 1_000_000.0
TARGET_EXCESS = 1.0  # seconds past k / budget
TARGET_EXTEND_MS = 500.0
LEAD = 5.0  # seconds between the end of seeding and the common deadline
ADMIN = Actor(subject="bench-admin", role=Role.ADMIN)


async def probe_extensions(container: Any, ids: list[str], done: asyncio.Event) -> list[float]:
    """Extend still-open windows of the burst while it drains; each answer's wall time (ms)."""
    waits: list[float] = []
    while not done.is_set():
        async with container.engine.connect() as connection:
            open_ids = [
                row[0]
                for row in await connection.execute(
                    text("SELECT id FROM payment_sessions WHERE status = 'open' LIMIT 50")
                )
            ]
        if not open_ids:
            break
        session_id = random.choice(open_ids)
        started = time.perf_counter()
        try:
            await container.windows.extend(session_id, 5, ADMIN)
        except (WindowElapsed, WindowNotOpen):
            pass
        else:
            raise RuntimeError(f"extending {session_id} past its deadline was accepted")
        waits.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return waits


async def one_burst(
    processes: Processes,
    redis_url: str,
    stripe_url: str,
    budget: float,
    capacity: float | None = None,
) -> dict[str, Any]:
    tag = "unlimited" if budget >= UNLIMITED else f"b{int(budget)}"
    async with pg_schema(f"bench_burst_{tag}") as schema:
        settings = bench_settings(
            schema, redis_url, stripe_url, redis_prefix=f"{tag}:", stripe_rps=budget
        )
        container = await bootstrap(settings)
        workers = []
        try:
            await container.index.mark_rebuilt()
            env = settings_env(settings)
            for number in range(WORKERS):
                command = [PYTHON, "-m", "payment_window", "worker"]
                workers.append(processes.start(f"{tag}-worker-{number}", command, env=env))
            for number in range(WORKERS):
                wait_for_log(processes.logs / f"{tag}-worker-{number}.log", "worker_started")
            deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD + 1)
            progress(f"  {tag}: seeding {WINDOWS} windows, all due at {deadline:%H:%M:%S}")
            sessions = await seed_windows(container, stripe_url, WINDOWS, first_deadline=deadline)
            await container.index.wake()
            calls_before = stripe_calls(stripe_url)
            await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
            done = asyncio.Event()
            prober = asyncio.create_task(
                probe_extensions(container, [s.id for s in sessions], done)
            )
            limit = time.monotonic() + WINDOWS / budget * 2 + 60
            while (left := await open_count(container)) > 0:
                if time.monotonic() > limit:
                    raise RuntimeError(f"{left} windows still open")
                progress(f"  {tag}: {WINDOWS - left}/{WINDOWS} expired")
                await asyncio.sleep(2)
            done.set()
            extend_ms = await prober
            calls_after = stripe_calls(stripe_url)
            async with container.engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT EXTRACT(EPOCH FROM expired_at - expires_at) FROM payment_sessions"
                        " WHERE status = 'expired' ORDER BY expired_at"
                    )
                )
                late = [float(value) for (value,) in rows]
        finally:
            for worker in workers:
                processes.stop(worker)
            await container.close()
    expire_calls = sum(
        n - calls_before.get(key, 0) for key, n in calls_after.items() if key.endswith("/expire")
    )
    excess = [value - k / budget for k, value in enumerate(late)]
    floor = WINDOWS / budget
    drain = max(late)
    figures = {q: percentile(excess, q) for q in (50, 99, 100)}
    # Beside the budget's floor: the floor of whichever is slower, the budget or the pipeline's
    # own pace measured in the control run (it says whether a miss is the budget's or the host's).
    pace = min(budget, capacity) if capacity else budget
    paced = [value - k / pace for k, value in enumerate(late)]
    lateness = {q: percentile(late, q) for q in (50, 99, 100)}
    return {
        "budget_per_second": budget,
        "windows": len(late),
        "drain_seconds": round(drain, 3),
        "floor_seconds": floor,
        "ratio": round(drain / floor, 3),
        "excess_seconds": {"p50": figures[50], "p99": figures[99], "max": figures[100]},
        "pace_per_second": round(pace, 1),
        "excess_over_pace_seconds": {
            "p50": percentile(paced, 50),
            "p99": percentile(paced, 99),
            "max": percentile(paced, 100),
        },
        "lateness_seconds": {"p50": lateness[50], "p99": lateness[99], "max": lateness[100]},
        "stripe_expire_calls_per_window": round(expire_calls / max(1, len(late)), 4),
        "extend_probes": len(extend_ms),
        "extend_ms": {
            "p50": round(percentile(extend_ms, 50), 1),
            "max": round(max(extend_ms, default=float("nan")), 1),
        },
        "met": figures[100] <= TARGET_EXCESS
        and len(late) == WINDOWS
        and bool(extend_ms)
        and max(extend_ms) <= TARGET_EXTEND_MS,
    }


async def main() -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    runs = []
    with Processes(logs) as processes:
        progress(f"burst: {WINDOWS} windows due at once, {WORKERS} workers; logs in {logs}")
        stripe_url = start_devstripe(processes)
        redis_url, _ = start_redis(processes)
        control = await one_burst(processes, redis_url, stripe_url, UNLIMITED)
        capacity = control["windows"] / control["drain_seconds"]
        progress(f"  unbudgeted pace on this host now: {capacity:.0f} windows/s")
        for budget in BUDGETS:
            runs.append(await one_burst(processes, redis_url, stripe_url, budget, capacity))
    worst = max(runs, key=lambda r: r["ratio"])
    result = {
        "windows": WINDOWS,
        "workers": WORKERS,
        "runs": runs,
        "control_unbudgeted": control,
        "unbudgeted_windows_per_second": round(capacity, 1),
        "ratio": worst["ratio"],
        "target": f"k-th window closed within {TARGET_EXCESS:.0f} s of k / budget; "
        f"extensions during the burst answered within {TARGET_EXTEND_MS:.0f} ms",
        "met": all(r["met"] for r in runs),
        "how": f"{WORKERS} `payment-window worker` processes, budget in Redis (GCRA), devstripe "
        "(httptools) and a private redis-server as child processes, PostgreSQL schema of its "
        "own; windows seeded by `seed_windows` with one deadline; an admin extension of an "
        "open window of the burst every 50 ms",
        "load_average": os.getloadavg(),
    }
    print(f"ratio (drain time / (windows / budget)), worst: {worst['ratio']:.3f}")
    print(
        f"control, no budget: {capacity:.0f} windows/s ({WINDOWS} in "
        f"{control['drain_seconds']:.2f} s) on this host now, load {os.getloadavg()[0]:.1f}"
    )
    for r in runs:
        e, lat = r["excess_seconds"], r["lateness_seconds"]
        print(
            f"{r['budget_per_second']:.0f}/s: ratio {r['ratio']:.3f}, drain "
            f"{r['drain_seconds']:.2f} s (floor {r['floor_seconds']:.1f} s); "
            f"lateness - k/budget p50={e['p50']:.3f}s "
            f"p99={e['p99']:.3f}s max={e['max']:.3f}s; over k/min(budget, unbudgeted pace) max="
            f"{r['excess_over_pace_seconds']['max']:.3f}s; lateness p50={lat['p50']:.2f}s "
            f"max={lat['max']:.2f}s; Stripe expire calls/window "
            f"{r['stripe_expire_calls_per_window']}; {r['extend_probes']} extensions during the "
            f"burst p50 {r['extend_ms']['p50']} ms max {r['extend_ms']['max']} ms"
        )
    print(f"target {result['target']}: {'met' if result['met'] else 'MISSED'}")
    write_result("burst", result)
    return result


if __name__ == "__main__":
    run(main())
