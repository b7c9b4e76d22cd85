"""Stripe webhooks: a verified event moves the window the way Stripe already moved its session.

The event id is stored in the transaction that acts on it, so a redelivery changes nothing; what
an event does is the domain's table (`domain/webhook_rules.py`), decided from the window's state
under its row lock. A window is found through every Checkout Session it ever had: a buyer who paid
on the old link just before a rotation has paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from payment_window.domain import access, stripe_calls
from payment_window.domain.errors import InvalidWebhook
from payment_window.domain.ports import CheckoutSession, UnitOfWork, UnitOfWorkFactory
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.domain.webhook_rules import Action, action_for
from payment_window.transitions import PAID, Transitions

log = structlog.get_logger(__name__)

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"
HANDLED = frozenset({COMPLETED, ASYNC_SUCCEEDED, ASYNC_FAILED, EXPIRED})
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


class StripeWebhooks:
    """The webhook use case, over the shared transitions."""

    def __init__(self, uow: UnitOfWorkFactory, transitions: Transitions) -> None:
        self._uow = uow
        self._t = transitions

    async def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify the raw body's signature, then act on the event at most once."""
        event = self._t.gateway.parse_webhook(payload, signature)
        event_id, event_type, checkout = _parse(event)
        if event_type not in HANDLED or checkout is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.IGNORED))
        now = self._t.clock.now()
        async with self._uow() as uow:
            session = await uow.sessions.get_by_checkout_session(checkout.id, for_update=True)
            if session is None:
                log.info("stripe_webhook_unknown_session", checkout_session_id=checkout.id)
                return self._done(WebhookResult(event_id, event_type, Outcome.UNKNOWN_SESSION))
            if not await uow.stripe_events.add(event_id, event_type, now):
                return self._done(WebhookResult(event_id, event_type, Outcome.DUPLICATE, session))
            changed = await self._apply(uow, session, event_type, checkout)
            if changed is not None:
                await uow.sessions.update(changed)
            await uow.commit()
        if changed is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.UNCHANGED, session))
        await self._t.announce_closed(changed)
        paid_elsewhere = (
            session.is_open
            and changed.status is not Status.EXPIRED
            and session.checkout_session_id not in (None, checkout.id)
        )
        if paid_elsewhere and session.checkout_session_id:
            # Paid on a rotated-away link: the current one must not take the money twice.
            await self._t.expire_quietly(
                session.checkout_session_id, f"paid-elsewhere:{session.checkout_session_id}"
            )
        return self._done(WebhookResult(event_id, event_type, Outcome.APPLIED, changed))

    async def _apply(
        self, uow: UnitOfWork, session: PaymentSession, event_type: str, checkout: CheckoutSession
    ) -> PaymentSession | None:
        """The change this event makes to the window as it stands, if any."""
        if event_type == ASYNC_SUCCEEDED:
            checkout = replace(checkout, payment_status="paid")
        action = action_for(
            event_type.removeprefix("checkout.session."),
            session.status,
            paid=checkout.payment_status in PAID,
            current_checkout=checkout.id == session.checkout_session_id,
        )
        match action:
            case Action.RECORD_PAYMENT:
                return self._t.apply_payment(uow, session, checkout, ACTOR)
            case Action.RECORD_LATE_PAYMENT:
                return await self._t.late_payment(uow, session, checkout, ACTOR)
            case Action.ALERT_DUPLICATE_PAYMENT:
                self._t.duplicate_payment(uow, session, checkout, ACTOR)
                return None
            case Action.CLOSE_PAYMENT_FAILED:
                return await self._close(uow, session, checkout, CloseReason.PAYMENT_FAILED)
            case Action.CLOSE_STRIPE_EXPIRED:
                return await self._close(uow, session, checkout, CloseReason.STRIPE_EXPIRED)
            case Action.NONE:
                return None

    async def _close(
        self,
        uow: UnitOfWork,
        session: PaymentSession,
        checkout: CheckoutSession,
        reason: CloseReason,
    ) -> PaymentSession:
        """Close the window unpaid, as the expiry task does.

        Stripe has already closed `checkout`; when that is not the window's current session
        (a payment failed on a rotated-away link), the current one is expired first.
        """
        if session.is_open and session.checkout_session_id not in (None, checkout.id):
            # A sibling expiry, made while the row is locked: background, bounded, one call.
            with stripe_calls.background(), stripe_calls.under_row_lock():
                completed = await self._t.expire_at_stripe(session)
            if completed is not None:
                return self._t.apply_payment(uow, session, completed, ACTOR)
        policy = await self._t.policy_for(uow, session.maker_id)
        return self._t.close(uow, session, policy, reason, ACTOR)

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
