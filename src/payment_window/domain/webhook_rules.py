"""What a Stripe Checkout Session event does to a window, decided from the window's state.

Stripe delivers at least once and in any order; deciding from the current (locked) state makes a
session's events converge whatever order they arrive in:

| event | open | awaiting | paid | expired |
| --- | --- | --- | --- | --- |
| `completed`, paid | paid | paid | another session: duplicate alert | paid late: ops alert |
| `completed`, unpaid | awaiting | — | — | — |
| `async_payment_succeeded` | paid | paid | another session: duplicate alert | paid late |
| `async_payment_failed` | expired `payment_failed` | expired `payment_failed` | — | — |
| `expired`, the current session | expired `stripe_expired` | — | — | — |
| `expired`, a rotated-away session | — | — | — | — |
"""

from __future__ import annotations

from enum import StrEnum

from payment_window.domain.session import Status

UNSETTLED = frozenset({Status.OPEN, Status.AWAITING_PAYMENT_CONFIRMATION})


class Action(StrEnum):
    RECORD_PAYMENT = "record_payment"
    RECORD_LATE_PAYMENT = "record_late_payment"
    ALERT_DUPLICATE_PAYMENT = "alert_duplicate_payment"
    CLOSE_PAYMENT_FAILED = "close_payment_failed"
    CLOSE_STRIPE_EXPIRED = "close_stripe_expired"
    NONE = "none"


def action_for(event: str, status: Status, *, paid: bool, current_checkout: bool) -> Action:
    """`event` is the part after `checkout.session.`; `current_checkout` when the event is about
    the window's current Checkout Session (for a paid window: the one that was paid)."""
    if event in ("completed", "async_payment_succeeded"):
        if not paid:
            return Action.RECORD_PAYMENT if status is Status.OPEN else Action.NONE
        if status in UNSETTLED:
            return Action.RECORD_PAYMENT
        if status is Status.EXPIRED:
            return Action.RECORD_LATE_PAYMENT
        return Action.NONE if current_checkout else Action.ALERT_DUPLICATE_PAYMENT
    if event == "async_payment_failed":
        return Action.CLOSE_PAYMENT_FAILED if status in UNSETTLED else Action.NONE
    if event == "expired" and status is Status.OPEN and current_checkout:
        return Action.CLOSE_STRIPE_EXPIRED
    return Action.NONE
