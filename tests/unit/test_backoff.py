"""The one retry schedule: exponential, jittered, capped, with each use's own parameters."""

from __future__ import annotations

from datetime import timedelta

from payment_window.backoff import backoff_delay, loop_backoff
from payment_window.outbox import RETRY_BASE, RETRY_CAP

FIRST = timedelta(seconds=2)


def test_each_failure_roughly_doubles_the_wait() -> None:
    for failures in range(1, 8):
        ceiling = 2.0 * 2 ** (failures - 1)
        delay = backoff_delay(failures, first=FIRST, cap=RETRY_CAP).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def test_the_wait_never_passes_the_cap() -> None:
    cap = timedelta(hours=1)
    delays = [backoff_delay(failures, first=FIRST, cap=cap) for failures in (20, 100, 10_000)]
    assert all(cap / 2 <= delay <= cap for delay in delays)


def test_jitter_spreads_callers_that_failed_together() -> None:
    assert len({backoff_delay(6, first=RETRY_BASE, cap=RETRY_CAP) for _ in range(20)}) > 1


def test_a_loop_waits_a_quarter_second_first_and_a_few_seconds_at_most() -> None:
    assert 0.125 <= loop_backoff(1) <= 0.25
    assert all(2.5 <= loop_backoff(failures) <= 5.0 for failures in (10, 1_000))
