"""Waiting for a moment on the clock that decides, instead of sleeping a guessed time.

Deployed processes judge due-ness and leases by the index's clock (Redis's `TIME` or
PostgreSQL's `now()`), which a test of real processes cannot move. A fixed sleep sized by this
process's clock plus a margin is too long on a quiet machine and too short on a loaded or skewed
one; polling the deciding clock until the moment has passed is exact on both.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from payment_window.domain.ports import WindowIndex

POLL_SECONDS = 0.02


async def until_index_time(index: WindowIndex, moment: datetime, seconds: float = 10.0) -> None:
    """Return once the index's clock has passed `moment`; fail after `seconds` of waiting."""
    give_up = time.monotonic() + seconds
    while (now := await index.now()) <= moment:
        assert time.monotonic() < give_up, f"the index's clock stayed at {now}, before {moment}"
        await asyncio.sleep(POLL_SECONDS)


async def until_next_due(index: WindowIndex, seconds: float = 10.0) -> None:
    """Return once the earliest moment on the index's schedule (a deadline, a retry after a
    backoff, a re-check) has passed on the index's clock."""
    next_due = await index.next_due()
    assert next_due is not None, "nothing is scheduled"
    await until_index_time(index, next_due, seconds)
