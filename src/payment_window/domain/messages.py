"""The messages each kind of change sends: notifications, analytics and the auction follow-up.

Their shapes are the contract with other systems (docs/events.md); every message carries its
outbox id when delivered so consumers can deduplicate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payment_window.domain.events import Destination, OutboxMessage
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.ports import UnreadableWindow
from payment_window.domain.session import CloseReason, PaymentSession, closed_event
from payment_window.domain.times import iso


def _subject(session: PaymentSession) -> dict[str, Any]:
    return {
        "sessionId": session.id,
        "auctionId": session.auction_id,
        "makerId": session.maker_id,
        "buyerId": session.buyer_id,
        "amount": session.amount,
        "currency": session.currency,
        **_account(session),
    }


def _account(session: PaymentSession) -> dict[str, Any]:
    """The maker's connected account and charge type, on a window that has one (Connect)."""
    if session.connect_account_id is None:
        return {}
    return {"stripeAccount": session.connect_account_id, "charge": session.connect_charge}


def _notify_both(event_type: str, body: dict[str, Any]) -> list[OutboxMessage]:
    return [
        OutboxMessage(Destination.MAKER, event_type, body),
        OutboxMessage(Destination.BUYER, event_type, body),
    ]


def retry_eligible(reason: CloseReason) -> bool:
    """Whether the auction may go back on sale: not after an admin stopped it on purpose."""
    return reason is not CloseReason.ADMIN_TERMINATED


def on_close(
    closed: PaymentSession, reason: CloseReason, policy: ExtensionPolicy, actor: str
) -> list[OutboxMessage]:
    """A window closed unpaid: tell maker and buyer, analytics, and the auction service."""
    body = {
        **_subject(closed),
        "reason": reason.value,
        "actor": actor,
        "expiresAt": iso(closed.expires_at),
        "expiredAt": iso(closed.expired_at),
    }
    event = f"payment_window.{closed_event(reason)}"
    return [
        *_notify_both(event, body),
        OutboxMessage(
            Destination.ANALYTICS,
            "payments.checkout.expired",
            {**body, "retryEligible": retry_eligible(reason)},
        ),
        _follow_up(closed, reason, policy.on_expiry),
    ]


FOLLOW_UP_BY_POLICY = {
    OnExpiry.RELIST: "auction.relist_requested",
    OnExpiry.NOTIFY_MAKER: "auction.maker_review_requested",
    OnExpiry.OFFER_NEXT_BIDDER: "auction.second_chance_requested",
}
# What a late payment cancels while it has not left: any of them would resell a paid item.
FOLLOW_UP_EVENTS = tuple(FOLLOW_UP_BY_POLICY.values())


def _follow_up(closed: PaymentSession, reason: CloseReason, on_expiry: OnExpiry) -> OutboxMessage:
    """What the auction service is asked to do about an auction whose winner did not pay."""
    body: dict[str, Any] = {
        "auctionId": closed.auction_id,
        "sessionId": closed.id,
        "makerId": closed.maker_id,
        "buyerId": closed.buyer_id,
        "reason": reason.value,
        "closedAt": iso(closed.expired_at),
        **_account(closed),
    }
    if on_expiry is OnExpiry.OFFER_NEXT_BIDDER:
        # The next bidder is offered the item at their own bid; the unpaid amount tells the
        # auction service what the winner owed (and which bid to compare it with).
        body.update(amount=closed.amount, currency=closed.currency)
    return OutboxMessage(Destination.AUCTION, FOLLOW_UP_BY_POLICY[on_expiry], body)


def on_late_payment(
    paid: PaymentSession,
    closed: PaymentSession,
    checkout_session_id: str,
    follow_ups_cancelled: int,
) -> OutboxMessage:
    """Stripe took the money for a window we had closed: operations must look (refund or sale).

    `follow_ups_cancelled` is 0 when the relist (or maker review) had already left, or was in
    flight: then the auction service may have relisted and must undo it on the payment.
    """
    return OutboxMessage(
        Destination.OPERATIONS,
        "operations.late_payment_after_expiry",
        {
            **_subject(paid),
            "checkoutSessionId": checkout_session_id,
            "closedReason": closed.reason,
            "expiredAt": iso(closed.expired_at),
            "paidAt": iso(paid.paid_at),
            "followUpsCancelled": follow_ups_cancelled,
        },
    )


def on_checkout_missing(closed: PaymentSession, checkout_session_id: str | None) -> OutboxMessage:
    """Stripe does not know the window's Checkout Session: operations must find out why."""
    return OutboxMessage(
        Destination.OPERATIONS,
        "operations.checkout_missing",
        {
            **_subject(closed),
            "checkoutSessionId": checkout_session_id,
            "expiredAt": iso(closed.expired_at),
        },
    )


def on_duplicate_payment(
    paid: PaymentSession, first_checkout_session_id: str | None, second_checkout_session_id: str
) -> OutboxMessage:
    """A second Checkout Session of one window took money: a refund is for a person to decide."""
    return OutboxMessage(
        Destination.OPERATIONS,
        "payment.duplicate_detected",
        {
            **_subject(paid),
            "checkoutSessionIds": [first_checkout_session_id, second_checkout_session_id],
            "paidAt": iso(paid.paid_at),
        },
    )


def on_extend(
    before: PaymentSession, after: PaymentSession, minutes: int, actor: str, reason: str | None
) -> list[OutboxMessage]:
    """A window was extended: maker and buyer hear the new deadline."""
    return _notify_both(
        "payment_window.extended",
        {
            **_subject(after),
            "actor": actor,
            "minutes": minutes,
            "reason": reason,
            "previousExpiresAt": iso(before.expires_at),
            "expiresAt": iso(after.expires_at),
            "checkoutUrl": after.checkout_url,
        },
    )


def on_payment(paid: PaymentSession) -> list[OutboxMessage]:
    """The buyer paid (or their payment is pending confirmation)."""
    body = {**_subject(paid), "status": paid.status.value, "paidAt": iso(paid.paid_at)}
    messages = _notify_both("payment_window.paid", body)
    if paid.paid_at is not None:
        messages.append(
            OutboxMessage(
                Destination.AUCTION,
                "auction.payment_received",
                {
                    "auctionId": paid.auction_id,
                    "sessionId": paid.id,
                    "buyerId": paid.buyer_id,
                    "amount": paid.amount,
                    "currency": paid.currency,
                    "paidAt": iso(paid.paid_at),
                    **_account(paid),
                },
            )
        )
    return messages


def on_reminder(session: PaymentSession, offset_minutes: int, now: datetime) -> OutboxMessage:
    """Nudge the buyer before the window closes: a reminder is cheaper than a relist."""
    return OutboxMessage(
        Destination.BUYER,
        "payment_window.reminder",
        {
            **_subject(session),
            "reminderMinutes": offset_minutes,
            "minutesLeft": max(0, int((session.expires_at - now).total_seconds() // 60)),
            "expiresAt": iso(session.expires_at),
            "checkoutUrl": session.checkout_url,
        },
    )


def on_window_unreadable(window: UnreadableWindow, now: datetime) -> OutboxMessage:
    """A stored window this version cannot read was set aside: someone must look at it."""
    return OutboxMessage(
        Destination.OPERATIONS,
        "operations.window_unreadable",
        {
            "sessionId": window.session_id,
            "auctionId": window.auction_id,
            "makerId": window.maker_id,
            "buyerId": window.buyer_id,
            "storedStatus": window.status,
            "problem": window.problem,
            "setAsideAt": iso(now),
        },
    )
