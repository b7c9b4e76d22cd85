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
