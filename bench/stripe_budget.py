"""The deployment's one Stripe budget under a burst: creates served first, and a 429 storm.

Two `payment-window worker` processes (PostgreSQL, a private Redis, the local Stripe server as
its own process) close a burst of windows all due at once, with `PW_STRIPE_RPS` the budget of
every Stripe call of the deployment. Two runs:

- **creates during a burst:** windows are opened (the service's `open`, spending the same shared
  budget as an API process would) one every 200 ms, first with nothing else going on, then while
  the burst drains. A create is buyer-facing: it should wait for at most one budget slot behind
  the burst, so its latency during the burst over its latency alone stays near 1.
- **429 storm:** the stand-in answers every call with a rate-limit 429 for a few seconds just as
  the burst starts. The pace of every process halves and grows back (AIMD), no window is given up:
  the drain time over its floor (`windows / budget`), and the 429s received.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

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
    wait_for_log,
    write_result,
)

from payment_window.bootstrap import bootstrap
from payment_window.domain.access import Actor, Role
from payment_window.service import OpenWindow

WORKERS = 2
WINDOWS = int(os.environ.get("BENCH_BUDGET_WINDOWS", "300"))
BUDGET = float(os.environ.get("BENCH_BUDGET_RPS", "20"))
STORM_SECONDS = float(os.environ.get("BENCH_STORM_SECONDS", "3"))
CREATES = 12
LEAD = 5.0
# Issue 24: a burst of expiries never delays a create by more than one budget slot. Its p50
# during the burst may exceed its p50 alone by one slot (1 / budget) and 10 ms of measuring.
SLOT_MS = 1000.0 / BUDGET
TARGET_CREATE_DELAY_MS = SLOT_MS + 10.0
TARGET_CREATE_EXTRA_MS = 150.0  # worst create during the burst over worst alone
# With a storm, nothing closes while it lasts and the pace then grows back by a twentieth of the
# budget a second (from under half): the drain may take the floor, the storm and that recovery.
RECOVERY_SECONDS = 10.0
MARKETPLACE = Actor(subject="bench-marketplace", role=Role.SERVICE)


async def creates(container: Any, count: int) -> list[float]:
    """Open `count` windows one every 200 ms; each one's wall time (ms)."""
    took = []
    for _ in range(count):
        request = OpenWindow(
            auction_id=f"auc_{uuid.uuid4().hex[:10]}",
            maker_id="mk_bench",
            buyer_id="by_bench",
            amount=1000,
            currency="eur",
            window_minutes=120,
        )
        started = time.perf_counter()
        await container.windows.open(request, MARKETPLACE)
        took.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.2)
    return took


async def one_run(
    processes: Processes, redis_url: str, stripe_url: str, *, storm: bool
) -> dict[str, Any]:
    tag = "storm" if storm else "creates"
    async with pg_schema(f"bench_budget_{tag}") as schema:
        settings = bench_settings(
            schema,
            redis_url,
            stripe_url,
            redis_prefix=f"{tag}{uuid.uuid4().hex[:6]}:",
            stripe_rps=BUDGET,
            stripe_expire_rps=None,
        )
        container = await bootstrap(settings)
        workers = []
        try:
            await container.index.mark_rebuilt()
            await container.clock.sync()
            env = settings_env(settings)
            for number in range(WORKERS):
                command = [PYTHON, "-m", "payment_window", "worker"]
                workers.append(processes.start(f"{tag}-worker-{number}", command, env=env))
            for number in range(WORKERS):
                wait_for_log(processes.logs / f"{tag}-worker-{number}.log", "worker_started", 120)
            alone = [] if storm else await creates(container, CREATES)
            deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD + 1)
            progress(f"  {tag}: seeding {WINDOWS} windows, all due at {deadline:%H:%M:%S}")
            await seed_windows(container, stripe_url, WINDOWS, first_deadline=deadline)
            await container.index.wake()
            async with httpx.AsyncClient(base_url=stripe_url, timeout=10) as stripe:
                await stripe.delete("/_test/calls")
                await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
                started = time.monotonic()
                if storm:
                    fault = {"kind": "rate_limit", "seconds": STORM_SECONDS}
                    (await stripe.post("/_test/faults", json=fault)).raise_for_status()
                during = [] if storm else await creates(container, CREATES)
                limit = time.monotonic() + WINDOWS / BUDGET * 4 + 120
                while (left := await open_count(container) - (0 if storm else 2 * CREATES)) > 0:
                    if time.monotonic() > limit:
                        raise RuntimeError(f"{left} windows still open")
                    progress(f"  {tag}: {WINDOWS - left}/{WINDOWS} expired")
                    await asyncio.sleep(1)
                drain = time.monotonic() - started
                timeline = (await stripe.get("/_test/calls/timeline")).json()
        finally:
            for worker in workers:
                processes.stop(worker)
            await container.close()
    times = sorted(at for at, _ in timeline["calls"])
    busiest = 0
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    floor = WINDOWS / BUDGET
    result: dict[str, Any] = {
        "windows": WINDOWS,
        "budget_per_second": BUDGET,
        "drain_seconds": round(drain, 2),
        "floor_seconds": floor,
        "drain_ratio": round(drain / floor, 3),
        "stripe_calls": len(times),
        "busiest_second_calls": busiest,
        "answered_429": int(timeline["statuses"].get("429", 0)),
    }
    if not storm:
        result["create_ms_alone"] = {
            "p50": round(percentile(alone, 50), 1),
            "max": round(max(alone), 1),
        }
        result["create_ms_during_burst"] = {
            "p50": round(percentile(during, 50), 1),
            "max": round(max(during), 1),
        }
        result["create_ratio"] = round(percentile(during, 50) / percentile(alone, 50), 3)
    else:
        result["storm_seconds"] = STORM_SECONDS
    return result


async def main() -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    with Processes(logs) as processes:
        progress(f"stripe budget: {WINDOWS} windows due at once, budget {BUDGET}/s; logs {logs}")
        stripe_url = start_devstripe(processes)
        redis_url, _ = start_redis(processes)
        with_creates = await one_run(processes, redis_url, stripe_url, storm=False)
        with_storm = await one_run(processes, redis_url, stripe_url, storm=True)
    extra = with_creates["create_ms_during_burst"]["max"] - with_creates["create_ms_alone"]["max"]
    delay = with_creates["create_ms_during_burst"]["p50"] - with_creates["create_ms_alone"]["p50"]
    met = (
        delay <= TARGET_CREATE_DELAY_MS
        and extra <= TARGET_CREATE_EXTRA_MS
        and with_creates["busiest_second_calls"] <= BUDGET + 1
        and with_storm["drain_seconds"]
        <= with_storm["floor_seconds"] + STORM_SECONDS + RECOVERY_SECONDS
    )
    result = {
        "windows": WINDOWS,
        "budget_per_second": BUDGET,
        "creates": with_creates,
        "storm": with_storm,
        "ratio": with_creates["create_ratio"],
        "create_delay_ms": round(delay, 1),
        "storm_ratio": with_storm["drain_ratio"],
        "target": f"create p50 during a burst at most one budget slot ({SLOT_MS:.0f} ms, +10 ms) "
        f"over its p50 alone and its worst within {TARGET_CREATE_EXTRA_MS:.0f} ms of alone; no "
        "second over the budget (+1 call); a "
        f"{STORM_SECONDS:.0f} s 429 storm drains within floor + storm + "
        f"{RECOVERY_SECONDS:.0f} s of AIMD recovery",
        "met": met,
        "how": f"{WORKERS} `payment-window worker` processes and the service's `open` in the "
        "benchmark process, one budget in Redis; devstripe and a private redis-server as child "
        "processes; the storm is devstripe's timed rate-limit fault",
        "load_average": os.getloadavg(),
    }
    c, s = with_creates, with_storm
    print(f"ratio (create p50 during a burst / alone): {c['create_ratio']:.3f}")
    print(
        f"creates: alone p50 {c['create_ms_alone']['p50']} ms max {c['create_ms_alone']['max']}"
        f" ms; during the burst p50 {c['create_ms_during_burst']['p50']} ms max "
        f"{c['create_ms_during_burst']['max']} ms; busiest second {c['busiest_second_calls']} "
        f"calls (budget {BUDGET:.0f}/s); drain {c['drain_seconds']} s (floor "
        f"{c['floor_seconds']:.1f} s)"
    )
    print(f"ratio (429-storm drain / floor): {s['drain_ratio']:.3f}")
    print(
        f"storm of {STORM_SECONDS:.0f} s: drain {s['drain_seconds']} s against the floor "
        f"{s['floor_seconds']:.1f} s; {s['answered_429']} answered 429; {s['stripe_calls']} "
        f"Stripe calls for {WINDOWS} windows; busiest second {s['busiest_second_calls']}"
    )
    print(f"target {result['target']}: {'met' if met else 'MISSED'}")
    write_result("stripe_budget", result)
    return result


if __name__ == "__main__":
    run(main())
