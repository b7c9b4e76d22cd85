"""The clocks a process reads: its own (shiftable in development only), the one that decides
(learnt as an offset to the index's), and Stripe's (learnt from the `Date` of its answers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from payment_window.adapters.clock import ReferenceClock, StripeClock, SystemClock
from payment_window.config import Environment, Settings

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class Fixed:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_a_shifted_process_clock_is_for_development_only() -> None:
    assert Settings(dev_clock_offset_seconds=-600).dev_clock_offset_seconds == -600
    with pytest.raises(ValidationError, match="development and tests only"):
        Settings(env=Environment.PRODUCTION, dev_clock_offset_seconds=30)
    shifted = SystemClock(offset_seconds=30).now() - datetime.now(UTC)
    assert timedelta(seconds=29) < shifted < timedelta(seconds=31)


async def test_the_deciding_clock_is_the_index_clock_read_through_ours() -> None:
    ours = Fixed(T0)  # this host is ten minutes slow

    async def index_now() -> datetime:
        return T0 + timedelta(minutes=10)

    clock = ReferenceClock(ours, index_now)
    await clock.sync()

    assert clock.now() == T0 + timedelta(minutes=10)


async def test_an_unreadable_index_keeps_the_last_offset() -> None:
    async def unreachable() -> datetime:
        raise ConnectionError("index down")

    clock = ReferenceClock(Fixed(T0), unreachable)
    await clock.sync()
    assert clock.now() == T0


def test_stripes_clock_narrows_with_each_answer_and_restarts_when_a_clock_steps() -> None:
    ours = Fixed(T0)
    stripe = StripeClock(ours)
    assert stripe.uncertainty is None and stripe.offset == timedelta(0)

    # Stripe is 42.3 s ahead; each answer is stamped with its whole second, 100 ms round trips.
    for sent_ms in (0, 370, 810):
        sent = T0 + timedelta(milliseconds=sent_ms)
        stamped = (sent + timedelta(seconds=42.35)).replace(microsecond=0)
        stripe.observe(stamped, sent, sent + timedelta(milliseconds=100))
    assert stripe.uncertainty is not None and stripe.uncertainty <= timedelta(seconds=0.35)
    assert abs(stripe.offset.total_seconds() - 42.3) <= 0.35

    # Our clock was stepped by an hour: the old answers no longer agree, the new one rules.
    stepped = T0 + timedelta(hours=1)
    stripe.observe(T0 + timedelta(seconds=50), stepped, stepped + timedelta(milliseconds=100))
    assert abs(stripe.offset.total_seconds() - (50 - 3600 + 0.45)) <= 0.6


def test_a_date_header_that_is_no_date_is_ignored() -> None:
    stripe = StripeClock(Fixed(T0))
    stripe.observe_date_header("not a date", T0, T0)
    stripe.observe_date_header(None, T0, T0)
    assert stripe.uncertainty is None
    stripe.observe_date_header("Tue, 01 Jan 2030 12:00:05 GMT", T0, T0 + timedelta(seconds=0.2))
    assert abs(stripe.offset.total_seconds() - 5.4) <= 0.6
