"""What each Stripe Checkout Session event does, from every state a window can be in."""

from __future__ import annotations

import pytest

from payment_window.domain.session import Status
from payment_window.domain.webhook_rules import Action, action_for

OPEN, AWAITING = Status.OPEN, Status.AWAITING_PAYMENT_CONFIRMATION
PAID, EXPIRED = Status.PAID, Status.EXPIRED


@pytest.mark.parametrize(
    ("event", "status", "paid", "current", "action"),
    [
        ("completed", OPEN, True, True, Action.RECORD_PAYMENT),
        ("completed", OPEN, True, False, Action.RECORD_PAYMENT),  # paid on a rotated-away link
        ("completed", AWAITING, True, True, Action.RECORD_PAYMENT),
        ("completed", EXPIRED, True, True, Action.RECORD_LATE_PAYMENT),
        ("completed", PAID, True, True, Action.NONE),  # the same payment again
        ("completed", PAID, True, False, Action.ALERT_DUPLICATE_PAYMENT),
        ("completed", OPEN, False, True, Action.RECORD_PAYMENT),  # awaiting confirmation
        ("completed", AWAITING, False, True, Action.NONE),
        ("completed", EXPIRED, False, True, Action.NONE),
        ("async_payment_succeeded", AWAITING, True, True, Action.RECORD_PAYMENT),
        ("async_payment_succeeded", EXPIRED, True, True, Action.RECORD_LATE_PAYMENT),
        ("async_payment_succeeded", PAID, True, False, Action.ALERT_DUPLICATE_PAYMENT),
        ("async_payment_failed", AWAITING, False, True, Action.CLOSE_PAYMENT_FAILED),
        ("async_payment_failed", OPEN, False, False, Action.CLOSE_PAYMENT_FAILED),
        ("async_payment_failed", PAID, False, True, Action.NONE),
        ("expired", OPEN, False, True, Action.CLOSE_STRIPE_EXPIRED),
        ("expired", OPEN, False, False, Action.NONE),  # the rotation's own expiry
        ("expired", EXPIRED, False, True, Action.NONE),
        ("expired", AWAITING, False, True, Action.NONE),
    ],
)
def test_each_event_moves_the_window_the_way_stripe_moved_its_session(
    event: str, status: Status, paid: bool, current: bool, action: Action
) -> None:
    assert action_for(event, status, paid=paid, current_checkout=current) is action


def test_final_windows_never_close_again() -> None:
    for event in ("completed", "async_payment_succeeded", "async_payment_failed", "expired"):
        for status in (PAID, EXPIRED):
            for paid in (True, False):
                action = action_for(event, status, paid=paid, current_checkout=True)
                assert action not in (Action.CLOSE_PAYMENT_FAILED, Action.CLOSE_STRIPE_EXPIRED)
