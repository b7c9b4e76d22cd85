"""Stripe webhooks: a verified event moves the window the way Stripe already moved its session.

Stripe delivers at least once and in any order. The event id is stored in the transaction that
acts on it, so a redelivery changes nothing; and every outcome is decided from the window's
current state (locked), so a session's events converge whatever order they arrive in:

| event | open | awaiting | paid | expired |
| --- | --- | --- | --- | --- |
| `completed`, paid | paid | paid | — | paid late: ops alert, follow-up cancelled |
| `completed`, unpaid | awaiting | — | — | — |
| `async_payment_succeeded` | paid | paid | — | paid late |
| `async_payment_failed` | expired `payment_failed` | expired `payment_failed` | — | — |
| `expired`, the current session | expired `stripe_expired` | — | — | — |
| `expired`, a rotated-away session | — | — | — | — |

(event types are `checkout.session.*`; `awaiting` is `awaiting_payment_confirmation`.)

A window is found through every Checkout Session it ever had: a buyer who paid on the old link
just before a rotation has paid. Changes go through the service's own building blocks (the
expiry task's close, the payment record), so they audit, announce and index the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from payment_window.domain import access, messages
from payment_window.domain.errors import InvalidWebhook
from payment_window.domain.ports import CheckoutGateway, CheckoutSession, UnitOfWork
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.service import PaymentWindows

log = structlog.get_logger(__name__)

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"
HANDLED = frozenset({COMPLETED, ASYNC_SUCCEEDED, ASYNC_FAILED, EXPIRED})
PAID = frozenset({"paid", "no_payment_required"})
ACTOR = access.SYSTEM_STRIPE


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    UNKNOWN_SESSION = "unknown_session"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What one delivery did; every outcome is acknowledged (2xx) to Stripe."""

    event_id: str
    event_type: str
    outcome: Outcome
    session: PaymentSession | None = None


@dataclass(frozen=True, slots=True)
class _Change:
    session: PaymentSession
    late: bool = False


class StripeWebhooks:
    """The webhook use case, over the payment-window service's building blocks."""

    def __init__(self, windows: PaymentWindows, gateway: CheckoutGateway) -> None:
        self._windows = windows
        self._gateway = gateway

    async def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify the raw body's signature, then act on the event at most once."""
        event = self._gateway.parse_webhook(payload, signature)
        event_id, event_type, checkout = _parse(event)
        if event_type not in HANDLED or checkout is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.IGNORED))
        windows = self._windows
        now = windows._clock.now()
        async with windows._uow() as uow:
            session = await uow.sessions.get_by_checkout_session(checkout.id, for_update=True)
            if session is None:
                log.info("stripe_webhook_unknown_session", checkout_session_id=checkout.id)
                return self._done(WebhookResult(event_id, event_type, Outcome.UNKNOWN_SESSION))
            if not await uow.stripe_events.add(event_id, event_type, now):
                return self._done(WebhookResult(event_id, event_type, Outcome.DUPLICATE, session))
            change = await self._apply(uow, session, event_type, checkout)
            if change is not None:
                await uow.sessions.update(change.session)
            await uow.commit()
        if change is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.UNCHANGED, session))
        await windows._closed(change.session)
        paid_elsewhere = (
            session.is_open
            and change.session.status is not Status.EXPIRED
            and session.checkout_session_id not in (None, checkout.id)
        )
        if paid_elsewhere and session.checkout_session_id:
            # Paid on a rotated-away link: the current one must not take the money twice.
            await windows._expire_quietly(
                session.checkout_session_id, f"paid-elsewhere:{session.id}:v{session.version}"
            )
        return self._done(WebhookResult(event_id, event_type, Outcome.APPLIED, change.session))

    async def _apply(
        self, uow: UnitOfWork, session: PaymentSession, event_type: str, checkout: CheckoutSession
    ) -> _Change | None:
        """The change this event makes to the window as it stands, if any."""
        windows = self._windows
        status = session.status
        if event_type == ASYNC_SUCCEEDED:
            checkout = replace(checkout, payment_status="paid")
        if event_type in (COMPLETED, ASYNC_SUCCEEDED):
            if checkout.payment_status in PAID:
                if status is Status.EXPIRED:
                    return _Change(await self._late_payment(uow, session, checkout), late=True)
                if status is Status.PAID:
                    return None
                return _Change(windows._apply_payment(uow, session, checkout, ACTOR))
            if status is Status.OPEN:
                return _Change(windows._apply_payment(uow, session, checkout, ACTOR))
            return None
        if event_type == ASYNC_FAILED:
            if status not in (Status.OPEN, Status.AWAITING_PAYMENT_CONFIRMATION):
                return None
            return await self._close(uow, session, checkout, CloseReason.PAYMENT_FAILED)
        # EXPIRED: only the window's current session ends it; a rotated-away one expiring is
        # the rotation itself.
        if status is not Status.OPEN or checkout.id != session.checkout_session_id:
            return None
        return await self._close(uow, session, checkout, CloseReason.STRIPE_EXPIRED)

    async def _close(
        self,
        uow: UnitOfWork,
        session: PaymentSession,
        checkout: CheckoutSession,
        reason: CloseReason,
    ) -> _Change:
        """Close the window unpaid, as the expiry task does.

        Stripe has already closed `checkout`; when that is not the window's current session
        (a payment failed on a rotated-away link), the current one is expired first.
        """
        windows = self._windows
        if session.is_open and session.checkout_session_id not in (None, checkout.id):
            completed = await windows._expire_at_stripe(session)
            if completed is not None:
                return _Change(windows._apply_payment(uow, session, completed, ACTOR))
        policy = await uow.policies.get(session.maker_id) or windows.default_policy
        return _Change(windows._apply_close(uow, session, policy, reason, ACTOR))

    async def _late_payment(
        self, uow: UnitOfWork, closed: PaymentSession, checkout: CheckoutSession
    ) -> PaymentSession:
        """The buyer paid in the last instant of a window we closed: the payment wins.

        The relist (or maker review) is cancelled if it has not left yet; operations hear of it
        either way, and the auction service gets `auction.payment_received` to undo a relist.
        """
        windows = self._windows
        now = windows._clock.now()
        paid = closed.record_late_payment(now)
        cancelled = await uow.cancel_pending(closed.id, messages.FOLLOW_UP_EVENTS, now)
        uow.record(
            windows._audit(
                paid,
                "payment_completed",
                ACTOR,
                closed.status,
                {
                    "checkoutSessionId": checkout.id,
                    "paymentStatus": checkout.payment_status,
                    "lateAfterExpiry": True,
                    "closedReason": closed.reason,
                    "followUpsCancelled": cancelled,
                },
            ),
            [
                messages.on_late_payment(paid, closed, checkout.id, cancelled),
                *messages.on_payment(paid),
            ],
        )
        log.warning(
            "late_payment_after_expiry",
            session_id=closed.id,
            closed_reason=closed.reason,
            follow_ups_cancelled=cancelled,
        )
        return paid

    def _done(self, result: WebhookResult) -> WebhookResult:
        log.info(
            "stripe_webhook_handled",
            stripe_event_id=result.event_id,
            stripe_event_type=result.event_type,
            outcome=result.outcome.value,
            session_id=result.session.id if result.session else None,
        )
        return result


def _parse(event: Mapping[str, Any]) -> tuple[str, str, CheckoutSession | None]:
    """The event's id, type and (for Checkout Session events) its session; 400 otherwise."""
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise InvalidWebhook("webhook body is not a Stripe event (no id or type)")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise InvalidWebhook("webhook body is not a Stripe event (no data.object)")
    obj: Mapping[str, Any] = data["object"]
    if not event_type.startswith("checkout.session."):
        return event_id, event_type, None
    checkout_id, expires_at = obj.get("id"), obj.get("expires_at")
    if not isinstance(checkout_id, str) or not checkout_id:
        raise InvalidWebhook("the event's Checkout Session has no id")
    return (
        event_id,
        event_type,
        CheckoutSession(
            id=checkout_id,
            url=obj.get("url") if isinstance(obj.get("url"), str) else None,
            status=str(obj.get("status")),
            payment_status=str(obj.get("payment_status")),
            expires_at=datetime.fromtimestamp(
                expires_at if isinstance(expires_at, int) else 0, UTC
            ),
        ),
    )
