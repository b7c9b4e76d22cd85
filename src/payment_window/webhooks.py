"""Stripe webhooks: a verified event moves the window the way Stripe already moved its session.

The event id is stored in the transaction that acts on it, so a redelivery changes nothing; what
an event does is the domain's table (`domain/webhook_rules.py`), decided from the window's state
under its row lock. A window is found through every Checkout Session it ever had: a buyer who paid
on the old link just before a rotation has paid. A Connect event names the connected account
(`account`): it matches a window only on that (account, session) pair.

The handler makes no Stripe call, so it answers Stripe at once: what must still happen at Stripe
(expiring the window's other session once one was paid) is recorded on the window for the
expiry task, which retries it as it retries any expiry. Thin (v2) event notifications and events
from the other mode (live vs test) are acknowledged and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from payment_window.domain import access
from payment_window.domain.errors import InvalidWebhook
from payment_window.domain.ports import (
    CheckoutSession,
    CheckoutStatus,
    PaymentStatus,
    UnitOfWork,
    UnitOfWorkFactory,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.domain.webhook_rules import Action, action_for
from payment_window.transitions import Transitions

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

    def __init__(
        self, uow: UnitOfWorkFactory, transitions: Transitions, *, livemode: bool | None = None
    ) -> None:
        self._uow = uow
        self._t = transitions
        # The API key's mode (sk_live_ / sk_test_); None when unknown (then nothing is refused).
        self._livemode = livemode

    async def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify the raw body's signature, then act on the event at most once."""
        event = self._t.checkouts.gateway.parse_webhook(payload, signature)
        if is_thin_event(event):
            # A thin notification carries no snapshot to act on; Stripe retries a refusal.
            result = WebhookResult(str(event.get("id")), str(event.get("type")), Outcome.IGNORED)
            return self._done(result, why="thin_event")
        event_id, event_type, checkout = _parse(event)
        livemode = event.get("livemode")
        if self._livemode is not None and isinstance(livemode, bool) and livemode != self._livemode:
            result = WebhookResult(event_id, event_type, Outcome.IGNORED)
            return self._done(result, why="livemode_mismatch")
        if event_type not in HANDLED or checkout is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.IGNORED))
        account = event.get("account") if isinstance(event.get("account"), str) else None
        now = self._t.clock.now()
        async with self._uow() as uow:
            session = await uow.sessions.get_by_checkout_session(checkout.id, for_update=True)
            if session is not None and session.stripe_account != account:
                # The same id on another account is not this window's session.
                log.warning(
                    "stripe_webhook_account_mismatch",
                    checkout_session_id=checkout.id,
                    stripe_account=account,
                    window_stripe_account=session.stripe_account,
                )
                session = None
            if session is None:
                log.info(
                    "stripe_webhook_unknown_session",
                    checkout_session_id=checkout.id,
                    stripe_account=account,
                )
                return self._done(WebhookResult(event_id, event_type, Outcome.UNKNOWN_SESSION))
            if not await uow.stripe_events.add(event_id, event_type, now):
                return self._done(WebhookResult(event_id, event_type, Outcome.DUPLICATE, session))
            changed = await self._apply(uow, session, event_type, checkout)
            paid_elsewhere = (
                changed is not None
                and session.is_open
                and changed.status is not Status.EXPIRED
                and session.checkout_session_id not in (None, checkout.id)
            )
            if changed is not None and paid_elsewhere and session.checkout_session_id:
                # Paid on a rotated-away link: the current one must not take the money twice.
                # The expiry task expires it at Stripe, after this answer.
                changed = changed.expire_other_checkout(session.checkout_session_id, now)
            if changed is not None:
                await uow.sessions.update(changed)
            await uow.commit()
        if changed is None:
            return self._done(WebhookResult(event_id, event_type, Outcome.UNCHANGED, session))
        await self._t.after_commit.announce_closed(changed)
        if changed.expire_checkout_id is not None:
            await self._t.after_commit.wake_workers(changed)
        return self._done(WebhookResult(event_id, event_type, Outcome.APPLIED, changed))

    async def _apply(
        self, uow: UnitOfWork, session: PaymentSession, event_type: str, checkout: CheckoutSession
    ) -> PaymentSession | None:
        """The change this event makes to the window as it stands, if any."""
        if event_type == ASYNC_SUCCEEDED:
            checkout = replace(checkout, payment_status=PaymentStatus.PAID)
        action = action_for(
            event_type.removeprefix("checkout.session."),
            session.status,
            paid=checkout.payment_status.settled,
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
    ) -> PaymentSession | None:
        """Close the window unpaid, as the expiry task does.

        Stripe has already closed `checkout`. A payment that failed on a rotated-away link of a
        window still open leaves the window as it is: its current link still takes the payment
        until the deadline, when the expiry task closes it at Stripe first (this handler makes
        no Stripe call).
        """
        if session.is_open and session.checkout_session_id not in (None, checkout.id):
            return None
        policy = await self._t.policy_for(uow, session.maker_id)
        return self._t.close(uow, session, policy, reason, ACTOR)

    def _done(self, result: WebhookResult, *, why: str | None = None) -> WebhookResult:
        log.info(
            "stripe_webhook_handled",
            stripe_event_id=result.event_id,
            stripe_event_type=result.event_type,
            outcome=result.outcome.value,
            ignored_because=why,
            session_id=result.session.id if result.session else None,
        )
        return result


def is_thin_event(event: Mapping[str, Any]) -> bool:
    """A thin (v2) event notification: `object: "v2.core.event"` and a `related_object`
    reference instead of a `data.object` snapshot."""
    kind = event.get("object")
    return (isinstance(kind, str) and kind.startswith("v2.")) or (
        "data" not in event and "related_object" in event
    )


_VALUES: dict[type[StrEnum], frozenset[str]] = {
    kind: frozenset(member.value for member in kind) for kind in (CheckoutStatus, PaymentStatus)
}


def _parse(event: Mapping[str, Any]) -> tuple[str, str, CheckoutSession | None]:
    """The event's id, type and (for the Checkout Session events acted on) its session; 400
    when the body is no Stripe event or such a session lacks what deciding needs."""
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise InvalidWebhook("webhook body is not a Stripe event (no id or type)")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise InvalidWebhook("webhook body is not a Stripe event (no data.object)")
    obj: Mapping[str, Any] = data["object"]
    if event_type not in HANDLED:
        return event_id, event_type, None
    checkout_id = obj.get("id")
    if not isinstance(checkout_id, str) or not checkout_id:
        raise InvalidWebhook("the event's Checkout Session has no id")
    # Every Checkout Session Stripe sends has these; without them the event cannot be judged
    # (a missing payment_status must not read as some status), so it is refused, not guessed.
    status, payment_status = obj.get("status"), obj.get("payment_status")
    expires_at = obj.get("expires_at")
    if not isinstance(status, str) or status not in _VALUES[CheckoutStatus]:
        raise InvalidWebhook("the event's Checkout Session has no known status")
    if not isinstance(payment_status, str) or payment_status not in _VALUES[PaymentStatus]:
        raise InvalidWebhook("the event's Checkout Session has no known payment_status")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise InvalidWebhook("the event's Checkout Session has no expires_at")
    try:
        expiry = datetime.fromtimestamp(expires_at, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidWebhook("the event's Checkout Session has no valid expires_at") from None
    url = obj.get("url")
    return (
        event_id,
        event_type,
        CheckoutSession(
            id=checkout_id,
            url=url if isinstance(url, str) else None,
            status=CheckoutStatus(status),
            payment_status=PaymentStatus(payment_status),
            expires_at=expiry,
        ),
    )
