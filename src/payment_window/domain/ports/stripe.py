"""Stripe as the use cases see it: Checkout Sessions, and the pace of every call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from payment_window.domain.session import PaymentSession
from payment_window.domain.stripe_calls import CallClass


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """Stripe's view of a Checkout Session."""

    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    expires_at: datetime
    # The PaymentIntent's status when Stripe was asked for it: tells a delayed payment that
    # failed (requires_payment_method, canceled) from one still processing.
    payment_intent_status: str | None = None
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
