"""Window arithmetic: deadlines, time left, and Stripe's allowed session lifetimes."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from payment_window.domain.errors import InvalidWindow

MAX_WINDOW = timedelta(days=7)
# Stripe accepts a Checkout Session `expires_at` between 30 minutes and 24 hours after creation.
# The margins absorb the clock difference between us and Stripe and the request's own latency.
STRIPE_MIN_LIFETIME = timedelta(minutes=30)
STRIPE_MAX_LIFETIME = timedelta(hours=24)
STRIPE_MARGIN = timedelta(minutes=1)
# Stripe counts a session's 24 hours from its own `created`, a whole second taken on receipt; this
# covers the request's latency and the difference between our clock and Stripe's.
STRIPE_CLOCK_MARGIN = timedelta(seconds=10)


def remaining_seconds(expires_at: datetime, now: datetime) -> int:
    """Whole seconds left until `expires_at`, rounded up so 0 means the window has closed."""
    return max(0, math.ceil((expires_at - now).total_seconds()))


def window_end(
    now: datetime, *, minutes: int | None = None, expires_at: datetime | None = None
) -> datetime:
    """The deadline of a new window: an explicit future time, or `minutes` from now."""
    if expires_at is not None and minutes is not None:
        raise InvalidWindow("give either windowMinutes or expiresAt, not both")
    if expires_at is None:
        if minutes is None or minutes < 1:
            raise InvalidWindow("windowMinutes must be at least 1")
        expires_at = now + timedelta(minutes=minutes)
    if expires_at.tzinfo is None:
        raise InvalidWindow("expiresAt needs a time zone (use Z for UTC)")
    if expires_at <= now:
        raise InvalidWindow("expiresAt must be in the future")
    if expires_at - now > MAX_WINDOW:
        raise InvalidWindow("a payment window may not end more than 7 days ahead")
    # Whole seconds, as Stripe's `expires_at`: the deadline is the moment Stripe stops taking
    # the payment. Rounded down: a window never runs longer than asked.
    ends = expires_at.replace(microsecond=0)
    if ends <= now:
        raise InvalidWindow("expiresAt must be at least a second in the future")
    return ends


def _whole_second_after(moment: datetime) -> datetime:
    return (
        moment if moment.microsecond == 0 else moment.replace(microsecond=0) + timedelta(seconds=1)
    )


def latest_checkout_end(now: datetime, margin: timedelta = STRIPE_CLOCK_MARGIN) -> datetime:
    """The latest `expires_at` Stripe accepts for a session created now (whole seconds)."""
    return (now + STRIPE_MAX_LIFETIME - margin).replace(microsecond=0)


def stripe_session_expiry(
    window_ends: datetime, now: datetime, margin: timedelta = STRIPE_CLOCK_MARGIN
) -> datetime:
    """The Checkout Session `expires_at` for a window: never before the window's end when
    Stripe's range allows it, so a window that fits one session is never given a second.

    Stripe's `expires_at` is whole seconds and cannot be moved later: a window that outlives
    its session needs a new one (rotation). `now` is Stripe's clock, known within `margin`.
    """
    earliest = _whole_second_after(now + STRIPE_MIN_LIFETIME + max(STRIPE_MARGIN, margin))
    return min(max(_whole_second_after(window_ends), earliest), latest_checkout_end(now, margin))


def fit_to_one_checkout(
    window_ends: datetime, now: datetime, margin: timedelta = STRIPE_CLOCK_MARGIN
) -> datetime:
    """A window asked to last about as long as a Stripe session (the default 24 hours) ends
    with its one session rather than needing a second for its last seconds."""
    latest = latest_checkout_end(now, margin)
    if latest < window_ends <= _whole_second_after(now + STRIPE_MAX_LIFETIME):
        return latest
    return window_ends
