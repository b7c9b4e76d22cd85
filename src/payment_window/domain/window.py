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
    # Milliseconds: the precision of the wire format and of the Redis index.
    return expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000)


def stripe_session_expiry(window_ends: datetime, now: datetime) -> datetime:
    """The Checkout Session `expires_at` for a window: its end, clamped to Stripe's range.

    Stripe cannot move this later, so a window that outlives it needs a new session (rotation).
    """
    earliest = now + STRIPE_MIN_LIFETIME + STRIPE_MARGIN
    latest = now + STRIPE_MAX_LIFETIME - STRIPE_MARGIN
    return min(max(window_ends, earliest), latest).replace(microsecond=0)
