"""What every benchmark shares: private servers as child processes, a store of its own, seeding.

Every server a benchmark starts is a child process tracked by `Processes`, which kills them all
on the way out, whatever happened. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
from devstripe.testing import TEST_API_KEY
from pydantic import SecretStr
from sqlalchemy import insert

from payment_window.adapters.migrate import migrate
from payment_window.adapters.rows import session_values
from payment_window.adapters.tables import payment_sessions
from payment_window.bootstrap import Container
from payment_window.config import Settings
from payment_window.domain.session import PaymentSession
from payment_window.service import new_session_id

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
DATABASE_URL = os.environ.get(
    "PW_BENCH_DATABASE_URL",
    os.environ.get("PW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (any order), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "date": datetime.now(UTC).isoformat(timespec="seconds"), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


class Processes:
    """Child processes that die with the benchmark: SIGTERM, then SIGKILL after a grace."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self._running: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.by_name: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._running.append((process, log))
        self.by_name[name] = process
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for process, log in reversed(self._running):
            try:
                self.stop(process)
            finally:
                log.close()
        self._running.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def start_redis(processes: Processes, name: str = "redis", *extra: str) -> tuple[str, int]:
    """A private redis-server (no persistence) on a free port: its URL and port."""
    import redis

    port = free_port()
    workdir = processes.logs / f"{name}-data"
    workdir.mkdir(exist_ok=True)
    processes.start(
        name,
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            *extra,
        ],
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        wait_until(client.ping, f"redis-server on {port}")
    finally:
        client.close()
    return f"redis://127.0.0.1:{port}/0", port


def start_devstripe(processes: Processes, http: str = "httptools") -> str:
    """The local Stripe server as its own process; httptools: the benchmarks inject no drops."""
    port = free_port()
    processes.start(
        "devstripe",
        [
            PYTHON, "-m", "devstripe",
            "--port", str(port), "--log-level", "warning", "--http", http,
        ],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/_test/health", timeout=1).status_code == 200, "devstripe")
    return url


def stripe_calls(stripe_url: str) -> dict[str, int]:
    return dict(httpx.get(f"{stripe_url}/_test/calls", timeout=10).json())


@asynccontextmanager
async def pg_schema(prefix: str = "bench") -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped (with everything in it) afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    dsn = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    try:
        yield schema
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()


def bench_settings(
    schema: str, redis_url: str | None, stripe_url: str, **overrides: Any
) -> Settings:
    """Settings over the benchmark's own schema, Redis and Stripe; the schema is migrated."""
    settings = Settings(
        database_url=DATABASE_URL,
        database_schema=schema,
        redis_url=redis_url,
        stripe_api_key=SecretStr(TEST_API_KEY),
        stripe_api_base=stripe_url,
        log_json=True,
        **{"stripe_expire_rps": 1_000_000.0, "stripe_rps": 1_000_000.0, **overrides},
    )
    # Alembic's env runs its own event loop: give it a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_create_schema, settings).result()
    return settings


def _create_schema(settings: Settings) -> None:
    migrate(settings)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment, with its own PW_ variables replaced by `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PW_")}
    return {**env, **settings.as_environment(), **extra}


async def seed_windows(
    container: Container,
    stripe_url: str,
    count: int,
    *,
    first_deadline: datetime,
    spread: timedelta = timedelta(0),
    buyer_id: str | None = None,
    maker_id: str = "mk_bench",
    index: bool = True,
) -> list[PaymentSession]:
    """`count` open windows with sessions at the local Stripe, deadlines over `spread`.

    Sessions come from devstripe's bulk `/_test/seed`; rows go to the store in multi-row
    inserts, and the index gets each window through its own `put`, many at a time.
    """
    now = datetime.now(UTC)
    stripe_expires = int((now + timedelta(hours=2)).timestamp())
    checkouts: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=stripe_url, timeout=120) as client:
        for start in range(0, count, 5000):
            answer = await client.post(
                "/_test/seed",
                json={"count": min(5000, count - start), "expires_at": stripe_expires},
            )
            answer.raise_for_status()
            checkouts.extend(answer.json()["data"])
    sessions = []
    for number, checkout in enumerate(checkouts):
        offset = spread * (number / max(1, count - 1)) if count > 1 else timedelta(0)
        expires_at = first_deadline + offset
        sessions.append(
            replace(
                PaymentSession(
                    id=new_session_id(),
                    auction_id=f"auc_{number}_{uuid.uuid4().hex[:8]}",
                    maker_id=maker_id,
                    buyer_id=buyer_id or f"by_{number}",
                    amount=1000,
                    currency="eur",
                    expires_at=expires_at.replace(
                        microsecond=expires_at.microsecond // 1000 * 1000
                    ),
                    created_at=now,
                    updated_at=now,
                ),
                checkout_session_id=checkout["id"],
                checkout_url=checkout["url"],
                checkout_expires_at=datetime.fromtimestamp(checkout["expires_at"], UTC),
            )
        )
    async with container.engine.begin() as connection:
        for start in range(0, count, 2000):
            rows = []
            for session in sessions[start : start + 2000]:
                values = session_values(session)
                values["due_at"] = session.expires_at
                rows.append(values)
            await connection.execute(insert(payment_sessions), rows)
    if index:
        for start in range(0, count, 500):
            await asyncio.gather(*(container.index.put(s) for s in sessions[start : start + 500]))
    return sessions


def run(coro: Any) -> Any:
    """asyncio.run, with uvloop when it is there (as uvicorn would pick it)."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def fill_index(redis_url: str, prefix: str, sessions: Sequence[PaymentSession]) -> None:
    """Write windows the way `RedisWindowIndex.put` lays them out, pipelined (no script)."""
    import redis

    from payment_window.adapters.redis_index import (
        KEEP_AFTER_CLOSE,
        due_key,
        to_ms,
        window_fields,
        window_key,
    )

    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for number, session in enumerate(sessions, 1):
            key = window_key(prefix, session.id)
            pipe.hset(key, mapping={"v": session.version, **window_fields(session)})
            pipe.pexpireat(key, to_ms(session.expires_at + KEEP_AFTER_CLOSE))
            pipe.zadd(due_key(prefix), {session.id: to_ms(session.expires_at)})
            if number % 2000 == 0:
                pipe.execute()
        # As a deployed index has it: built once, so workers do not start by rebuilding it.
        pipe.set(f"{due_key(prefix)}:built", "1")
        pipe.execute()
    finally:
        client.close()


async def open_count(container: Container) -> int:
    from sqlalchemy import func, select

    async with container.engine.connect() as connection:
        return int(
            await connection.scalar(
                select(func.count())
                .select_from(payment_sessions)
                .where(payment_sessions.c.status == "open")
            )
            or 0
        )


def wait_for_log(path: Path, needle: str, timeout: float = 30.0) -> None:
    wait_until(
        lambda: needle in path.read_text(errors="replace"), f"{needle!r} in {path.name}", timeout
    )
