"""The relay's retry schedule: exponential, jittered, capped."""

from __future__ import annotations

from datetime import timedelta

from payment_window.outbox import retry_delay


def test_each_failure_roughly_doubles_the_wait() -> None:
    for attempts in range(1, 8):
        ceiling = 2.0 * 2 ** (attempts - 1)
        delay = retry_delay(attempts).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def test_the_wait_never_passes_the_cap() -> None:
    cap = timedelta(hours=1)
    delays = [retry_delay(attempts, cap=cap) for attempts in (20, 100, 10_000)]
    assert all(cap / 2 <= delay <= cap for delay in delays)


def test_jitter_spreads_relays_that_failed_together() -> None:
    assert len({retry_delay(6) for _ in range(20)}) > 1
