"""The relay's claim with a large outbox: 1,000,000 undelivered rows for a destination this
deployment does not deliver to (Segment off, the issue's case) plus a few due rows it does.

A PostgreSQL schema of its own, migrated to 0006 (before retention), is seeded by
`INSERT ... SELECT generate_series`; the claim (`SqlOutboxStore.claim`, the relay's own call,
one process, the service's engine) is timed many times; then migration 0010 builds its indexes
on that table (timed: what the upgrade costs) and the claim is timed again. Printed: p50/p99
before and after, their ratio, and the plan of the claim after.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATABASE_URL, percentile, pg_schema, progress, run, write_result
from sqlalchemy import text

from payment_window.adapters.migrate import migrate
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.store import create_engine
from payment_window.config import Settings
from payment_window.domain.events import Destination

ROWS = int(os.environ.get("BENCH_OUTBOX_ROWS", "1000000"))
DUE = 50
SAMPLES = int(os.environ.get("BENCH_OUTBOX_SAMPLES", "60"))
SERVED = [Destination.MAKER, Destination.BUYER, Destination.AUCTION, Destination.OPERATIONS]


async def _timed_claims(store: SqlOutboxStore) -> list[float]:
    times: list[float] = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        # A lease of zero: the rows stay due for the next sample, as for an idle relay.
        await store.claim(SERVED, datetime.now(UTC), timedelta(0), 100)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(times, 50), 2), "p99": round(percentile(times, 99), 2)}


async def main() -> dict[str, Any]:
    async with pg_schema("bench_outbox") as schema:
        settings = Settings(database_url=DATABASE_URL, database_schema=schema)
        await asyncio.to_thread(migrate, settings, "0009")
        engine = create_engine(settings, bounded=False)
        try:
            async with engine.begin() as connection:
                progress(f"seeding {ROWS:,} undelivered analytics rows and {DUE} due ones")
                await connection.execute(
                    text(
                        "INSERT INTO outbox (id, session_id, destination, event_type, payload,"
                        " attempts, next_attempt_at, created_at)"
                        " SELECT md5(g::text), 'pw_' || g, 'analytics', 'window_expired', '{}',"
                        " 0, now() - interval '1 day', now() - interval '1 day'"
                        " FROM generate_series(1, :rows) AS g"
                    ),
                    {"rows": ROWS},
                )
                await connection.execute(
                    text(
                        "INSERT INTO outbox (id, session_id, destination, event_type, payload,"
                        " attempts, next_attempt_at, created_at)"
                        " SELECT 'due-' || g, 'pw_due_' || g, 'maker', 'window_expired', '{}',"
                        " 0, now(), now() FROM generate_series(1, :due) AS g"
                    ),
                    {"due": DUE},
                )
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE outbox"))
            store = SqlOutboxStore(engine)
            before = await _timed_claims(store)
            started = time.perf_counter()
            await asyncio.to_thread(migrate, settings, "0010")
            migration_seconds = round(time.perf_counter() - started, 1)
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("ANALYZE outbox"))
            after = await _timed_claims(store)
            async with engine.connect() as connection:
                plan = (
                    (
                        await connection.execute(
                            text(
                                "EXPLAIN SELECT id FROM outbox WHERE delivered_at IS NULL AND"
                                " cancelled_at IS NULL AND next_attempt_at <= now() AND destination"
                                " IN ('maker','buyer','auction','operations')"
                                " ORDER BY next_attempt_at, created_at LIMIT 100"
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
        finally:
            await engine.dispose()
    result = {
        "rows": ROWS,
        "claim_before_ms": _summary(before),
        "claim_after_ms": _summary(after),
        "migration_0010_seconds": migration_seconds,
        "ratio": round(percentile(before, 50) / max(percentile(after, 50), 0.001), 1),
        "plan_after": plan,
    }
    return result


if __name__ == "__main__":
    outcome = run(main())
    print(outcome)
    write_result("outbox_claim", outcome)
