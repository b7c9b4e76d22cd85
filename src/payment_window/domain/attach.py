"""Putting a window on a Checkout Session another integration made: what makes one fit."""

from __future__ import annotations

from datetime import datetime

from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutRecoveryEnabled,
    WindowOutlivesCheckout,
)
from payment_window.domain.ports import CheckoutSession


def check_attachable(checkout: CheckoutSession, window_ends: datetime) -> None:
    """Refuse a session the window could not be enforced on: one no longer open, one Stripe
    would follow with a recovery session, or one that ends before the window (Stripe cannot
    move a session's end, and the service cannot remake a session it did not compose)."""
    if checkout.status != "open":
        raise CheckoutNotOpen(checkout.id, checkout.status)
    if checkout.recovery_enabled:
        raise CheckoutRecoveryEnabled(checkout.id)
    if window_ends > checkout.expires_at:
        latest = checkout.expires_at.isoformat().replace("+00:00", "Z")
        raise WindowOutlivesCheckout(checkout.id, latest)
