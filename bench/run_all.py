"""Run every benchmark in order, then regenerate the results table in docs/performance.md.

Each benchmark is its own process (so one that fails cannot take the others' servers with it),
prints its ratio first and its absolute figures after, and writes bench/results/<name>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "performance.md"
BENCHMARKS = [
    "lateness",
    "burst",
    "stripe_budget",
    "expiry_throughput",
    "status_load",
    "index_scale",
    "buyer_record",
]
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def measured(name: str, r: dict) -> str:  # type: ignore[type-arg]
    if name == "lateness":
        w, m = r["worker_lateness_seconds"], r["once_a_minute_lateness_seconds"]
        return (
            f"workers p50 {w['p50']:.3f} s, p99 {w['p99']:.3f} s, max {w['max']:.3f} s; "
            f"once a minute p99 {m['p99']:.1f} s ({r['windows']} windows, {r['shortened']})"
        )
    if name == "burst":
        runs = "; ".join(
            f"{x['budget_per_second']:.0f}/s: drain {x['drain_seconds']:.1f} s (floor "
            f"{x['floor_seconds']:.0f} s), lateness - k/budget p50 {x['excess_seconds']['p50']:.2f}"
            f" s, p99 {x['excess_seconds']['p99']:.2f} s, max {x['excess_seconds']['max']:.2f} s,"
            f" extend during burst max {x['extend_ms']['max']:.0f} ms"
            for x in r["runs"]
        )
        return (
            f"{r['windows']} windows due at once; {runs}; unbudgeted pace "
            f"{r['unbudgeted_windows_per_second']:.0f}/s in the same run"
        )
    if name == "stripe_budget":
        c, s = r["creates"], r["storm"]
        return (
            f"{r['windows']} windows due at once, budget {r['budget_per_second']:.0f}/s: creates "
            f"alone p50 {c['create_ms_alone']['p50']:.0f} ms max {c['create_ms_alone']['max']:.0f}"
            f" ms, during the burst p50 {c['create_ms_during_burst']['p50']:.0f} ms max "
            f"{c['create_ms_during_burst']['max']:.0f} ms, busiest second "
            f"{c['busiest_second_calls']} calls; {s['storm_seconds']:.0f} s 429 storm: drain "
            f"{s['drain_seconds']:.1f} s (floor {s['floor_seconds']:.0f} s, ratio "
            f"{s['drain_ratio']}), {s['answered_429']} answered 429"
        )
    if name == "expiry_throughput":
        runs = ", ".join(f"{x['workers']}w {x['windows_per_second']:.0f}/s" for x in r["runs"])
        calls = sorted({x["stripe_expire_calls_per_window"] for x in r["runs"]})
        return (
            f"{runs}; set-based floor {r['baseline']['windows_per_second']:.0f}/s; "
            f"Stripe expire calls/window {calls}"
        )
    if name == "status_load":
        s, h = r["status"], r["baseline"]
        text = (
            f"saturation: status {s['requests_per_second']:.0f} req/s p99 {s['p99_ms']:.1f} ms; "
            f"healthz {h['requests_per_second']:.0f} req/s p99 {h['p99_ms']:.1f} ms; PostgreSQL "
            f"reads during status: {r['postgres_reads_during_status_run']}"
        )
        if "fixed_load" in r:
            f, d = r["fixed_load"], r["redis_down"]
            text += (
                f"; 1,000 req/s offered: status p99 {f['status']['p99_ms']:.0f} ms "
                f"({f['status']['requests_per_second']:.0f} req/s answered, codes "
                f"{f['status']['codes']}), healthz p99 {f['healthz']['p99_ms']:.0f} ms "
                f"({f['healthz']['requests_per_second']:.0f} req/s): p99 ratio {f['p99_ratio']}; "
                f"Redis down: {d['status_saturation']['requests_per_second']:.0f} req/s at "
                f"saturation ({d['ratio']}x healthz), p99 {d['status_fixed']['p99_ms']:.0f} ms "
                f"at 1,000 offered"
            )
        if "scale_out" in r:
            o = r["scale_out"]
            text += (
                f"; {o['processes']} processes: {o['status_requests_per_second']:.0f} status req/s;"
                f" 10,000/s takes {o['processes_for_10000_per_second']} processes"
            )
        return text
    if name == "buyer_record":
        b, c, n, s = r["baseline_ms"], r["record_ms"], r["repeat_non_payers_ms"], r["summary_ms"]
        return (
            f"{r['windows']:,} closed windows, {r['buyers']:,} buyers: record p50 {c['p50']:.1f} ms"
            f" p99 {c['p99']:.1f} ms; repeat non-payers p50 {n['p50']:.0f} ms p99 "
            f"{n['p99']:.0f} ms; whole summary p50 {s['p50']:.0f} ms p99 {s['p99']:.0f} ms; "
            f"primary-key read p50 {b['p50']:.2f} ms; migration 0006 on that table "
            f"{r['migration_0006_seconds']} s"
        )
    sizes = "; ".join(
        f"{x['windows']:,}: {x['bytes_per_window']} B/window, claim(200) p50 "
        f"{x['claim_200_ms']['p50']} ms"
        for x in r["sizes"]
    )
    return f"{sizes} (checkout URL {r['checkout_url_length']} chars)"


def ratio_of(name: str, r: dict) -> str:  # type: ignore[type-arg]
    labels = {
        "lateness": "once-a-minute p99 / worker p99",
        "burst": "worst drain time / (windows / budget)",
        "stripe_budget": "create p50 during a burst / alone",
        "expiry_throughput": "best workers / set-based SQL floor",
        "status_load": "status / healthz req/s",
        "index_scale": "300 B / measured B per window",
        "buyer_record": "buyer record p50 / primary-key read p50",
    }
    return f"{r['ratio' if 'ratio' in r else 'ratio_to_floor']} ({labels[name]})"


def table(results: dict[str, dict | None]) -> str:  # type: ignore[type-arg]
    lines = [
        "| benchmark | target | measured | ratio | met | how measured | date |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in BENCHMARKS:
        r = results.get(name)
        if r is None:
            lines.append(
                f"| {name} | — | did not finish (see the run's output) | — | missed | — | "
                f"{datetime.now(UTC):%Y-%m-%d} |"
            )
            continue
        how = r.get("how") or r.get("once_a_minute_method", "")
        load = r.get("load_average")
        if load:
            how += f"; host load average {load[0]:.1f} on 2 cores"
        lines.append(
            f"| {name} | {r['target']} | {measured(name, r)} | {ratio_of(name, r)} | "
            f"{'met' if r['met'] else '**missed**'} | {how} | {r['date'][:10]} |"
        )
    return "\n".join(lines)


def write_doc(results: dict[str, dict | None]) -> None:  # type: ignore[type-arg]
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table(results)}\n{END}{tail}")


def main() -> int:
    wanted = sys.argv[1:] or BENCHMARKS
    results: dict[str, dict | None] = {}  # type: ignore[type-arg]
    failed = []
    for number, name in enumerate(BENCHMARKS, 1):
        path = HERE / "results" / f"{name}.json"
        if name not in wanted:
            results[name] = json.loads(path.read_text()) if path.exists() else None
            continue
        print(f"\n=== [{number}/{len(BENCHMARKS)}] {name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")], cwd=ROOT, env=os.environ)
        print(
            f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in "
            f"{time.monotonic() - started:.0f} s ===",
            flush=True,
        )
        if code != 0:
            failed.append(name)
            results[name] = None
        else:
            results[name] = json.loads(path.read_text())
    write_doc(results)
    print(f"\nwrote {DOC.relative_to(ROOT)}")
    print(table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
