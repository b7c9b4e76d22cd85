"""Redis memory per open window, and claim latency, at 100,000 and 1,000,000 windows.

A private redis-server (no persistence) on a free port. Windows are written with the layout of
`RedisWindowIndex.put` (hash of short fields with the URL in 64-byte pieces, key expiry, one
sorted-set entry), as raw commands streamed through `redis-cli --pipe`. Memory per window is the
`INFO memory` used_memory delta over the count; MEMORY USAGE samples split it into the hash and
the sorted-set share. Claim latency is `claim_due` of a batch of 200 (the Lua script), timed
from the client, with every window already due.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Processes, percentile, progress, run, start_redis, write_result

from payment_window.adapters.redis_index import (
    URL_PIECE,
    RedisWindowIndex,
    due_key,
    window_key,
)

SIZES = [int(n) for n in os.environ.get("BENCH_INDEX_SIZES", "100000,1000000").split(",")]
TARGET_BYTES = 300
CLAIMS = 30
# Shaped like the service's windows on the local Stripe server (its 95-character checkout URL).
URL = "http://127.0.0.1:12111/c/pay/cs_test_" + "a1B2c3D4e5" * 5 + "f6G7h8I9"


def _resp(*parts: str | int) -> bytes:
    out = [f"*{len(parts)}\r\n"]
    for part in parts:
        text = str(part)
        out.append(f"${len(text.encode())}\r\n{text}\r\n")
    return "".join(out).encode()


def write_windows(port: int, start: int, stop: int) -> None:
    """Windows number start..stop-1, due an hour ago (so every claim finds a full batch)."""
    now_ms = int(time.time() * 1000)
    pipe = subprocess.Popen(
        ["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert pipe.stdin is not None
    try:
        chunk: list[bytes] = []
        for number in range(start, stop):
            session_id = f"pw_{number:024x}"
            key = window_key("", session_id)
            due = now_ms - 3_600_000 + number % 1000
            url = URL[:-6] + f"{number:06d}"
            pieces: list[str | int] = []
            for piece, at in enumerate(range(0, len(url), URL_PIECE)):
                pieces += [f"u{piece}", url[at : at + URL_PIECE]]
            chunk.append(
                _resp(
                    "HSET",
                    key,
                    "v",
                    1,
                    "e",
                    due,
                    "s",
                    "open",
                    "a",
                    f"auc_{number}",
                    "m",
                    f"mk_{number % 5000}",
                    "b",
                    f"by_{number}",
                    "n",
                    1000 + number % 9000,
                    "c",
                    "eur",
                    *pieces,
                )
            )
            chunk.append(_resp("PEXPIREAT", key, due + 7 * 86_400_000 + 3_600_000))
            chunk.append(_resp("ZADD", due_key(""), due, session_id))
            if len(chunk) >= 30_000:
                pipe.stdin.write(b"".join(chunk))
                chunk.clear()
        pipe.stdin.write(b"".join(chunk))
    finally:
        pipe.stdin.close()
        pipe.wait(timeout=120)


async def claim_latency(port: int) -> list[float]:
    client = redis.asyncio.Redis(port=port, decode_responses=True)
    index = RedisWindowIndex(client)
    timings = []
    try:
        for _ in range(CLAIMS):
            started = time.perf_counter()
            claims = await index.claim_due(200, 30.0)
            timings.append((time.perf_counter() - started) * 1000)
            assert len(claims) == 200
            # Give them back, so the next claim meets the same-sized index.
            await client.zadd(due_key(""), {c.session_id: 1 for c in claims})
            await client.zrem(due_key("") + ":inflight", *(c.session_id for c in claims))
    finally:
        await index.close()
    return timings


async def main() -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="bench-index-"))
    results = []
    with Processes(logs) as processes:
        _, port = start_redis(processes)
        client = redis.Redis(port=port)
        try:
            base = int(client.info("memory")["used_memory"])
            written = 0
            for size in SIZES:
                progress(f"index_scale: writing windows {written}..{size}")
                started = time.perf_counter()
                write_windows(port, written, size)
                progress(f"  written in {time.perf_counter() - started:.1f} s")
                written = size
                assert client.zcard(due_key("")) == size
                used = int(client.info("memory")["used_memory"])
                samples = [f"pw_{n:024x}" for n in range(0, size, max(1, size // 200))]
                hash_bytes = sum(
                    int(client.memory_usage(window_key("", s)) or 0) for s in samples
                ) / len(samples)
                zset_bytes = int(client.memory_usage(due_key(""), samples=1000) or 0) / size
                timings = await claim_latency(port)
                row = {
                    "windows": size,
                    "bytes_per_window": round((used - base) / size, 1),
                    "memory_usage_hash_bytes": round(hash_bytes, 1),
                    "memory_usage_zset_share_bytes": round(zset_bytes, 1),
                    "claim_200_ms": {
                        "p50": round(percentile(timings, 50), 3),
                        "p99": round(percentile(timings, 99), 3),
                    },
                }
                progress(f"  {row}")
                results.append(row)
        finally:
            client.close()
    worst = max(r["bytes_per_window"] for r in results)
    flat = results[-1]["claim_200_ms"]["p50"] / results[0]["claim_200_ms"]["p50"]
    result = {
        "sizes": results,
        "checkout_url_length": len(URL),
        "worst_bytes_per_window": worst,
        "ratio": round(TARGET_BYTES / worst, 3),
        "claim_latency_growth": round(flat, 2),
        "target": f"<= {TARGET_BYTES} bytes/window; claim latency flat (1M p50 <= 2x 100k p50)",
        "met": worst <= TARGET_BYTES and flat <= 2.0,
        "how": "private redis-server 7; raw commands mirroring RedisWindowIndex.put through "
        "redis-cli --pipe; INFO used_memory delta / count; MEMORY USAGE of 200 sampled hashes "
        "and of the zset (SAMPLES 1000) / count; 30 claim_due(200) calls",
    }
    print(f"ratio (target bytes / measured bytes per window): {result['ratio']}")
    for r in results:
        print(
            f"{r['windows']:>9} windows: {r['bytes_per_window']} B/window (hash "
            f"{r['memory_usage_hash_bytes']} + zset {r['memory_usage_zset_share_bytes']}), "
            f"claim(200) p50 {r['claim_200_ms']['p50']} ms p99 {r['claim_200_ms']['p99']} ms"
        )
    print(f"target: {result['target']}: {'met' if result['met'] else 'MISSED'}")
    write_result("index_scale", result)
    return result


if __name__ == "__main__":
    run(main())
