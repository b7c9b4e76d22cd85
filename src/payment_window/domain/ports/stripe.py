"""Stripe as the use cases see it: Checkout Sessions, and the pace of every call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from payment_window.domain.session import PaymentSession
from payment_window.domain.stripe_calls import CallClass


class CheckoutStatus(StrEnum):
    """A Checkout Session's `status`, as Stripe documents it."""

    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class PaymentStatus(StrEnum):
    """A Checkout Session's `payment_status`, as Stripe documents it."""

    PAID = "paid"
    UNPAID = "unpaid"
    NO_PAYMENT_REQUIRED = "no_payment_required"

    @property
    def settled(self) -> bool:
        """The buyer owes nothing more: the money arrived, or none was asked for."""
        return self is not PaymentStatus.UNPAID


class PaymentIntentStatus(StrEnum):
    """A PaymentIntent's `status`, as Stripe documents it."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"

    @property
    def failed(self) -> bool:
        """A delayed payment that will not arrive: the buyer must pay again, or cannot."""
        return self in (PaymentIntentStatus.REQUIRES_PAYMENT_METHOD, PaymentIntentStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """Stripe's view of a Checkout Session."""

    id: str
    url: str | None
    status: CheckoutStatus
    payment_status: PaymentStatus
    expires_at: datetime
    # The PaymentIntent's status when Stripe was asked for it: tells a delayed payment that
    # failed from one still processing.
    payment_intent_status: PaymentIntentStatus | None = None
    # What attaching a window to a session made elsewhere needs to know of it.
    amount_total: int | None = None
    currency: str | None = None
    recovery_enabled: bool = False


class CheckoutGateway(Protocol):
    """Stripe's Checkout Sessions. `account` names the connected account a session lives on
    (direct charges: the `Stripe-Account` header); None is the platform's own."""

    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        """A session for the window, on `session.stripe_account`, with its Connect terms."""
        ...

    async def retrieve(
        self, checkout_session_id: str, *, account: str | None = None
    ) -> CheckoutSession: ...

    async def expire(
        self, checkout_session_id: str, idempotency_key: str, *, account: str | None = None
    ) -> CheckoutSession:
        """Expire an open session; raises CheckoutNotOpen carrying Stripe's status otherwise."""
        ...

    def parse_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]: ...


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more call fits the budget."""
        ...


class StripeBudget(Protocol):
    """Every Stripe call of the deployment, one pace: buyer-facing calls first."""

    async def acquire(self, call_class: CallClass) -> None:
        """Wait for this call's slot."""
        ...

    async def slow_down(self) -> float:
        """Stripe answered 429: halve the shared pace (once per moment); the new pace."""
        ...

    async def pace(self) -> float:
        """The calls per second the deployment may make now."""
        ...
