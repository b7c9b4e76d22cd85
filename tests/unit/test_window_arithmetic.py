"""Deadlines of new windows and the Stripe session lifetimes they map to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_window.domain.errors import InvalidWindow
from payment_window.domain.window import (
    STRIPE_MAX_LIFETIME,
    STRIPE_MIN_LIFETIME,
    fit_to_one_checkout,
    stripe_session_expiry,
    window_end,
)

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def test_a_window_ends_its_minutes_from_now() -> None:
    assert window_end(NOW, minutes=1440) == NOW + timedelta(days=1)


def test_an_explicit_future_end_is_kept() -> None:
    ends = NOW + timedelta(hours=3)
    assert window_end(NOW, expires_at=ends) == ends


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expires_at": NOW - timedelta(seconds=1)},
        {"expires_at": NOW},
        {"expires_at": NOW + timedelta(days=7, seconds=1)},
        {"expires_at": datetime(2026, 7, 2, 12, 0)},  # naive
        {"minutes": 0},
        {"minutes": 60, "expires_at": NOW + timedelta(hours=1)},
    ],
)
def test_impossible_windows_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidWindow):
        window_end(NOW, **kwargs)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=7 * 24 * 3600))
def test_stripe_sessions_always_fit_stripes_allowed_range(seconds_ahead: int) -> None:
    expires = stripe_session_expiry(NOW + timedelta(seconds=seconds_ahead), NOW)
    assert NOW + STRIPE_MIN_LIFETIME <= expires <= NOW + STRIPE_MAX_LIFETIME


@given(st.integers(min_value=35 * 60, max_value=23 * 3600))
def test_a_window_inside_stripes_range_ends_with_its_session(seconds_ahead: int) -> None:
    ends = NOW + timedelta(seconds=seconds_ahead)
    assert stripe_session_expiry(ends, NOW) == ends


@given(
    st.integers(min_value=1, max_value=24 * 60),
    st.integers(min_value=0, max_value=999_999),
)
def test_a_window_up_to_a_day_long_fits_one_stripe_session(minutes: int, micros: int) -> None:
    now = NOW + timedelta(microseconds=micros)
    ends = fit_to_one_checkout(window_end(now, minutes=minutes), now)
    session_end = stripe_session_expiry(ends, now)
    # Never a second session: Stripe's session lasts at least as long as the window...
    assert session_end >= ends
    # ...and stays within what Stripe accepts, counted from its own whole-second `created`.
    created_at_stripe = now.replace(microsecond=0)
    assert session_end <= created_at_stripe + STRIPE_MAX_LIFETIME
    assert session_end >= now + STRIPE_MIN_LIFETIME
    # The default window loses only the seconds Stripe's clock needs.
    assert ends > now + timedelta(minutes=minutes) - timedelta(seconds=11)


def test_a_window_longer_than_a_day_keeps_its_end() -> None:
    ends = NOW + timedelta(hours=30)
    assert fit_to_one_checkout(ends, NOW) == ends
    assert stripe_session_expiry(ends, NOW) < ends
