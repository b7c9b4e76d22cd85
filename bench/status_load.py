"""Status reads under load: `GET /payments/checkout/{id}/status` against `GET /healthz`.

One uvicorn process (PW_REDIS_URL set, so status is served from the Redis index) and `wrk` in a
separate process: 64 connections, one thread, the buyer's bearer token, session ids rotated over
1,000 seeded windows by a small Lua script. wrk is closed-loop (each connection waits for its
answer), which is the "open-loop-ish" compromise: it needs `apt-get install -y wrk` (Debian); the
benchmark says so and stops when wrk is missing. It is not part of `make test`.

Fixed offered load (issue 15): `hey -c 50 -q 20 -z 8s` (50 connections at 20 req/s each, 1,000
req/s offered; hey from Debian) against /healthz and against one window's status, comparing
p50/p99 and counting non-200 answers. The same two figures are taken again with the private
Redis stopped (status then served from the store), reported, not targeted.

Then the status saturation run once more against a uvicorn of two processes, for what it takes to
hold 10,000 status reads/s (one process's saturated pace sets the count; the two-process run shows
how far this 2-core host, which also runs wrk and Redis, gets).

That status reads never touch PostgreSQL is checked on the benchmark's own schema: the scan
counters of `payment_sessions` (pg_stat_user_tables) do not move during the status run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    Processes,
    bench_settings,
    free_port,
    pg_schema,
    progress,
    run,
    seed_windows,
    settings_env,
    start_devstripe,
    start_redis,
    wait_until,
    write_result,
)
from pydantic import SecretStr
from sqlalchemy import text

from payment_window.api.auth import mint_token
from payment_window.bootstrap import bootstrap

CONNECTIONS = 64
# The same saturation run against this many uvicorn processes: what scaling out gives here.
SCALE_OUT = 2
SECONDS = int(os.environ.get("BENCH_STATUS_SECONDS", "10"))
WINDOWS = 1000
TARGET_RATIO = 0.7
TARGET_P99_MS = 25.0  # at saturation (closed loop)
HEY_CONNECTIONS, HEY_QPS_EACH = 50, 20  # 1,000 req/s offered
HEY_SECONDS = int(os.environ.get("BENCH_STATUS_HEY_SECONDS", "8"))
TARGET_FIXED_P99_RATIO = 2.0  # status p99 / healthz p99 at 1,000 req/s offered
PROFILE = os.environ.get("BENCH_STATUS_PROFILE")  # a path: py-spy records the status run there
# CORS is on (PW_CORS_ORIGINS) and every request comes from that origin, as from a marketplace
# page embedding <payment-window-timer>: the status read answers with the CORS headers.
ORIGIN = "https://shop.example"

LUA = """
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/payments/checkout/" .. ids[(n %% #ids) + 1] .. "/status")
end
"""


def wrk(url: str, token: str, script: Path | None) -> dict[str, Any]:
    argv = [
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "--timeout", "5s",
        "-H", f"Authorization: Bearer {token}", "-H", f"Origin: {ORIGIN}",
    ]  # fmt: skip
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=SECONDS + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    text_out = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text_out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", text_out)
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", text_out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text_out)
    return {
        "requests_per_second": rps,
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "raw": text_out,
    }


def hey(url: str, token: str) -> dict[str, Any]:
    """A fixed offered load: HEY_CONNECTIONS workers at HEY_QPS_EACH requests/s each."""
    argv = [
        "hey", "-c", str(HEY_CONNECTIONS), "-q", str(HEY_QPS_EACH), "-z", f"{HEY_SECONDS}s",
        "-t", "5", "-H", f"Authorization: Bearer {token}", "-H", f"Origin: {ORIGIN}", url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=HEY_SECONDS + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    text_out = out.stdout
    codes = {
        int(code): int(count)
        for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", text_out)
    }
    errors = re.search(r"Error distribution:(.*)", text_out, re.S)

    def quantile(q: int) -> float:
        found = re.search(rf"\s{q}% in ([\d.]+) secs", text_out)
        return float(found.group(1)) * 1000 if found else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text_out)
    return {
        "offered_per_second": HEY_CONNECTIONS * HEY_QPS_EACH,
        "requests_per_second": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": quantile(50),
        "p99_ms": quantile(99),
        "codes": codes,
        "non_200": sum(n for code, n in codes.items() if code != 200),
        "errors": errors.group(1).strip()[:500] if errors else "",
    }


def profiler(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for one run, as collapsed stacks (bench/profile_top.py reads them)."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    argv = [spy, "record", "-p", str(pid), "-d", str(SECONDS), "-f", "raw", "-o", path]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_api(processes: Processes, name: str, env: dict[str, str], workers: int) -> str:
    """A uvicorn serving the app with `workers` processes on a free port: its base URL."""
    port = free_port()
    processes.start(
        name,
        [
            PYTHON, "-m", "uvicorn", "payment_window.api.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log", "--http", "httptools", "--loop", "uvloop",
            "--workers", str(workers),
        ],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, name, 30)
    return base


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return {"us": value / 1000, "ms": value, "s": value * 1000}[unit]


async def table_reads(container: Any) -> int:
    async with container.engine.connect() as connection:
        await connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            await connection.scalar(
                text(
                    "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                    " WHERE relname = 'payment_sessions' AND schemaname = current_schema()"
                )
            )
        )


async def main() -> dict[str, Any]:
    if shutil.which("wrk") is None:
        sys.exit("status_load needs wrk: apt-get install -y wrk (Debian), then run it again")
    if shutil.which("hey") is None:
        sys.exit("status_load needs hey: apt-get install -y hey (Debian), then run it again")
    logs = Path(tempfile.mkdtemp(prefix="bench-status-"))
    with Processes(logs) as processes:
        progress(f"status_load: {CONNECTIONS} connections, {SECONDS} s each; logs in {logs}")
        stripe_url = start_devstripe(processes)
        redis_url, _ = start_redis(processes)
        redis_process = processes.by_name["redis"]
        async with pg_schema("bench_status") as schema:
            settings = bench_settings(
                schema,
                redis_url,
                stripe_url,
                jwt_secret=SecretStr("bench-secret-" + "x" * 32),
                cors_origins=[ORIGIN],
            )
            container = await bootstrap(settings)
            try:
                sessions = await seed_windows(
                    container,
                    stripe_url,
                    WINDOWS,
                    first_deadline=datetime.now(UTC) + timedelta(hours=1),
                    buyer_id="by_bench",
                )
                await container.index.mark_rebuilt()
                env = settings_env(settings, PW_LOG_JSON="true")
                base = start_api(processes, "uvicorn", env, workers=1)
                token = mint_token(settings, "by_bench", "buyer")
                probe = await asyncio.to_thread(
                    httpx.get,
                    f"{base}/payments/checkout/{sessions[0].id}/status",
                    headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN},
                )
                assert probe.status_code == 200, probe.text
                assert probe.headers.get("access-control-allow-origin") == ORIGIN
                script = logs / "status.lua"
                script.write_text(LUA % ", ".join(json.dumps(s.id) for s in sessions))
                one_status = f"{base}/payments/checkout/{sessions[0].id}/status"
                wrk(f"{base}/healthz", token, None)  # warm-up
                progress("  healthz, 1,000 req/s offered")
                health_fixed = hey(f"{base}/healthz", token)
                progress("  status, 1,000 req/s offered")
                status_fixed = hey(one_status, token)
                progress("  healthz, saturation")
                health = wrk(f"{base}/healthz", token, None)
                before = await table_reads(container)
                progress("  status, saturation")
                spy = None
                if PROFILE:
                    spy = profiler(processes.by_name["uvicorn"].pid, PROFILE)
                status = wrk(base, token, script)
                if spy is not None:
                    spy.wait(30)
                await asyncio.sleep(1.5)  # PostgreSQL flushes table statistics about once a second
                after = await table_reads(container)
                progress(f"  status, saturation, {SCALE_OUT} uvicorn processes")
                wide = start_api(processes, "uvicorn-wide", env, workers=SCALE_OUT)
                status_wide = wrk(wide, token, script)
                processes.stop(processes.by_name["uvicorn-wide"])
                progress("  Redis stopped: status from the store, 1,000 req/s offered")
                processes.stop(redis_process)
                down_fixed = hey(one_status, token)
                progress("  Redis stopped: status from the store, saturation")
                down = wrk(base, token, script)
            finally:
                await container.close()
    ratio = status["requests_per_second"] / health["requests_per_second"]
    fixed_ratio = status_fixed["p99_ms"] / health_fixed["p99_ms"]
    result = {
        "connections": CONNECTIONS,
        "seconds_each": SECONDS,
        "baseline": {k: v for k, v in health.items() if k != "raw"},
        "status": {k: v for k, v in status.items() if k != "raw"},
        "ratio": round(ratio, 3),
        "fixed_load": {
            "how": f"hey -c {HEY_CONNECTIONS} -q {HEY_QPS_EACH} -z {HEY_SECONDS}s, one window",
            "healthz": health_fixed,
            "status": status_fixed,
            "p99_ratio": round(fixed_ratio, 2),
        },
        "redis_down": {
            "status_fixed": down_fixed,
            "status_saturation": {k: v for k, v in down.items() if k != "raw"},
            "ratio": round(down["requests_per_second"] / health["requests_per_second"], 3),
        },
        "scale_out": {
            "processes": SCALE_OUT,
            "status_requests_per_second": status_wide["requests_per_second"],
            "p99_ms": status_wide["p99_ms"],
            "non_2xx": status_wide["non_2xx"],
            # One process's saturated pace, with the load generator on the same cores.
            "processes_for_10000_per_second": math.ceil(10_000 / status["requests_per_second"]),
        },
        "postgres_reads_during_status_run": after - before,
        "target": f">= {TARGET_RATIO}x healthz requests/s at saturation; status p99 <= "
        f"{TARGET_FIXED_P99_RATIO:.0f}x healthz p99 at 1,000 req/s offered, every answer 200",
        "met": ratio >= TARGET_RATIO
        and fixed_ratio <= TARGET_FIXED_P99_RATIO
        and status_fixed["non_200"] == 0
        and status_fixed["codes"].get(200, 0) > 0
        and status["non_2xx"] == 0
        and after == before,
        "how": "wrk -t1 -c64 (closed loop) in its own process; one uvicorn process "
        "(httptools, uvloop) with PW_REDIS_URL; 1,000 windows rotated",
        "load_average": os.getloadavg(),
    }
    print(f"ratio (status / healthz requests/s at saturation): {ratio:.3f}")
    print(f"ratio (status p99 / healthz p99 at 1,000 req/s offered): {fixed_ratio:.2f}")
    for name, figures in (
        ("healthz", health_fixed),
        ("status", status_fixed),
        ("no redis", down_fixed),
    ):
        print(
            f"{name:8} 1,000/s offered: {figures['requests_per_second']:7.0f} req/s  "
            f"p50={figures['p50_ms']:.2f} ms  p99={figures['p99_ms']:.2f} ms  "
            f"codes={figures['codes']} {figures['errors'][:120]}"
        )
    print(
        f"no redis saturation {down['requests_per_second']:.0f} req/s "
        f"({result['redis_down']['ratio']:.3f}x healthz) p99={down['p99_ms']:.2f} ms "
        f"non-2xx={down['non_2xx']}"
    )
    for name, figures in (("healthz", health), ("status", status)):
        print(
            f"{name:8} {figures['requests_per_second']:8.0f} req/s  p50={figures['p50_ms']:.2f} ms"
            f"  p99={figures['p99_ms']:.2f} ms  non-2xx={figures['non_2xx']}"
        )
    print(
        f"status with {SCALE_OUT} processes: {status_wide['requests_per_second']:.0f} req/s "
        f"p99={status_wide['p99_ms']:.2f} ms non-2xx={status_wide['non_2xx']}; 10,000 status "
        f"reads/s take {result['scale_out']['processes_for_10000_per_second']} processes of "
        f"{status['requests_per_second']:.0f} req/s each"
    )
    print(f"payment_sessions scans during the status run: {after - before} (must be 0)")
    print(f"target: {result['target']}: {'met' if result['met'] else 'MISSED'}")
    write_result("status_load", result)
    return result


if __name__ == "__main__":
    run(main())
