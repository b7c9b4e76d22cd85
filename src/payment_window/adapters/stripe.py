"""Stripe Checkout through the official SDK: the `CheckoutGateway` port.

Beside it: `stripe_http` (the client every request passes), `stripe_errors` (the one place
Stripe's exceptions become ours) and `stripe_signatures` (a webhook body, verified and checked).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe
import structlog
from stripe.checkout import SessionService

from payment_window.adapters.clock import StripeClock
from payment_window.adapters.stripe_errors import (
    missing_as_checkout_session_missing,
    refused_as_checkout_refused,
    unavailable_when_transient,
)
from payment_window.adapters.stripe_http import PacedHTTPClient
from payment_window.adapters.stripe_signatures import (
    checked_event,
    refuse_future_timestamp,
    verify_with_any,
)
from payment_window.config import Settings
from payment_window.domain.errors import (
    CheckoutNotOpen,
    InvalidWebhook,
    PaymentProviderUnavailable,
)
from payment_window.domain.ports import (
    CheckoutSession,
    CheckoutStatus,
    Metrics,
    PaymentIntentStatus,
    PaymentStatus,
    StripeBudget,
)
from payment_window.domain.session import PaymentSession

log = structlog.get_logger(__name__)

_NOT_OPEN = re.compile(r"Only Checkout Sessions with a status in .* can be expired")
_NOT_OPEN_STATUS = re.compile(r"has a status of `?(\w+)`?")


class StripeGateway:
    """The `CheckoutGateway` port on Stripe Checkout Sessions.

    Retries are the SDK's (`PW_STRIPE_MAX_NETWORK_RETRIES`): connection errors, timeouts, 409,
    5xx, and 429s that Stripe marks `Stripe-Should-Retry` (lock timeouts). A plain rate-limit
    429 is not retried by the SDK, on purpose; it surfaces as PaymentProviderUnavailable (and
    halves the shared budget). Every request, retries included, passes `PacedHTTPClient`: a
    request made while the caller holds a row lock is bounded (`LOCKED_CALL_SECONDS`) and
    never retried there.
    """

    def __init__(
        self,
        api_key: str | None,
        *,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        max_network_retries: int = 2,
        public_base_url: str = "http://127.0.0.1:8000",
        timeout_seconds: float = 30.0,
        budget: StripeBudget | None = None,
        stripe_clock: StripeClock | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        # aiohttp: measured five times the calls per second of the SDK's httpx client at the
        # expiry path's concurrency (bench/, Stripe calls against the local server).
        self._http = PacedHTTPClient(
            timeout=timeout_seconds, budget=budget, stripe_clock=stripe_clock, metrics=metrics
        )
        self.stripe_clock = stripe_clock
        # Without a key the integration is off: every call is "provider unavailable".
        self._client: stripe.StripeClient | None = None
        if api_key:
            self._client = stripe.StripeClient(
                api_key,
                base_addresses={"api": api_base} if api_base else {},
                max_network_retries=max_network_retries,
                http_client=self._http,
            )
        # Several endpoint secrets at once: the platform endpoint, a Connect endpoint, and the
        # old and new secret while a secret is rolled.
        self._webhook_secrets = [
            part.strip() for part in (webhook_secret or "").split(",") if part.strip()
        ]
        self.livemode = _key_mode(api_key)
        self._public_base_url = public_base_url.rstrip("/")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        timeout_seconds: float = 30.0,
        budget: StripeBudget | None = None,
        stripe_clock: StripeClock | None = None,
        metrics: Metrics | None = None,
    ) -> StripeGateway:
        """The gateway `PW_STRIPE_*` describes; off (and said so once) without an API key."""
        if settings.stripe_api_key is None:
            log.info("integration_off", integration="stripe", hint="set PW_STRIPE_API_KEY")
        secret = settings.stripe_webhook_secret
        return cls(
            settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None,
            api_base=settings.stripe_api_base,
            webhook_secret=secret.get_secret_value() if secret else None,
            max_network_retries=settings.stripe_max_network_retries,
            public_base_url=settings.public_base_url,
            timeout_seconds=timeout_seconds,
            budget=budget,
            stripe_clock=stripe_clock,
            metrics=metrics,
        )

    @property
    def _sessions(self) -> SessionService:
        if self._client is None:
            raise PaymentProviderUnavailable(
                "Stripe is not configured (PW_STRIPE_API_KEY)", kind="not_configured"
            )
        return self._client.v1.checkout.sessions

    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        """A Checkout Session for the window's amount, ending at `expires_at`, not recoverable;
        Stripe refusing the parameters (`amount_too_small`, ...) raises CheckoutRefused."""
        page = f"{self._public_base_url}/checkout/{session.id}"
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": session.currency.lower(),
                        "unit_amount": session.amount,
                        "product_data": {"name": f"Auction {session.auction_id}"},
                    },
                }
            ],
            "expires_at": int(expires_at.timestamp()),
            # A recovered session would let the buyer pay after the window closed.
            "after_expiration": {"recovery": {"enabled": False}},
            "client_reference_id": session.id,
            "metadata": {
                "sessionId": session.id,
                "auctionId": session.auction_id,
                "makerId": session.maker_id,
                "buyerId": session.buyer_id,
            },
            "success_url": f"{page}?checkout=success",
            "cancel_url": f"{page}?checkout=cancel",
        }
        intent = _connect_intent_data(session)
        if intent:
            params["payment_intent_data"] = intent
        with refused_as_checkout_refused(), unavailable_when_transient():
            created = await self._sessions.create_async(
                params,  # type: ignore[arg-type]
                _options(session.stripe_account, idempotency_key=idempotency_key),
            )
        return _to_checkout(created)

    async def retrieve(
        self, checkout_session_id: str, *, account: str | None = None
    ) -> CheckoutSession:
        """The session as Stripe has it (on `account`); CheckoutSessionMissing when Stripe has
        none by that id there."""
        with (
            missing_as_checkout_session_missing(checkout_session_id),
            unavailable_when_transient(),
        ):
            # The PaymentIntent tells a delayed payment that failed from one still processing.
            found = await self._sessions.retrieve_async(
                checkout_session_id, {"expand": ["payment_intent"]}, _options(account)
            )
        return _to_checkout(found)

    async def expire(
        self, checkout_session_id: str, idempotency_key: str, *, account: str | None = None
    ) -> CheckoutSession:
        """Expire an open session; raises CheckoutNotOpen carrying Stripe's status otherwise, and
        CheckoutSessionMissing when Stripe has no session by that id."""
        try:
            with (
                missing_as_checkout_session_missing(checkout_session_id),
                unavailable_when_transient(),
            ):
                expired = await self._sessions.expire_async(
                    checkout_session_id,
                    options=_options(account, idempotency_key=idempotency_key),
                )
        except stripe.InvalidRequestError as error:
            message = error.user_message or ""
            if error.http_status != 400 or not _NOT_OPEN.search(message):
                raise
            status = _NOT_OPEN_STATUS.search(message)
            if status is not None:
                raise CheckoutNotOpen(checkout_session_id, status.group(1)) from error
            # Stripe reworded its message: ask for the status instead.
            current = await self.retrieve(checkout_session_id, account=account)
            if current.status is CheckoutStatus.OPEN:
                raise PaymentProviderUnavailable(
                    f"Stripe refused to expire open session {checkout_session_id}"
                ) from error
            raise CheckoutNotOpen(checkout_session_id, current.status) from error
        return _to_checkout(expired)

    def parse_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, once its `Stripe-Signature` proves it is Stripe's and recent, and its
        shape is one the use case can act on (InvalidWebhook, a 400, otherwise)."""
        if not signature or not self._webhook_secrets:
            raise InvalidWebhook("missing Stripe-Signature header or webhook secret")
        refuse_future_timestamp(signature)
        try:
            text = payload.decode("utf-8")
            verify_with_any(text, signature, self._webhook_secrets)
            event = json.loads(text)
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise InvalidWebhook(str(error)) from error
        except RecursionError:
            # Thousands of nested arrays exhaust json's recursion; no Stripe event nests so.
            raise InvalidWebhook("webhook body nests too deeply to be a Stripe event") from None
        return checked_event(event)

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _key_mode(api_key: str | None) -> bool | None:
    """Live (True) or test (False) mode of a Stripe secret or restricted key; None if unknown."""
    if not api_key:
        return None
    if api_key.startswith(("sk_live_", "rk_live_")):
        return True
    if api_key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def _options(account: str | None, **options: Any) -> Any:
    """The SDK's request options: the `Stripe-Account` header for a connected account."""
    if account:
        options["stripe_account"] = account
    return options


def _connect_intent_data(session: PaymentSession) -> dict[str, Any]:
    """`payment_intent_data` for the window's Connect terms: a destination charge transfers
    to the connected account (optionally on its behalf); either charge may take a fee."""
    connect = session.connect
    if connect is None:
        return {}
    data: dict[str, Any] = {}
    if connect.application_fee_amount is not None:
        data["application_fee_amount"] = connect.application_fee_amount
    if connect.stripe_account is None:
        data["transfer_data"] = {"destination": connect.account_id}
        if connect.on_behalf_of:
            data["on_behalf_of"] = connect.account_id
    return data


def _to_checkout(session: stripe.checkout.Session) -> CheckoutSession:
    after = getattr(session, "after_expiration", None)
    recovery = getattr(after, "recovery", None) if after else None
    return CheckoutSession(
        id=session.id,
        url=session.url,
        status=_known(CheckoutStatus, session.status, "status"),
        payment_status=_known(PaymentStatus, session.payment_status, "payment_status"),
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        payment_intent_status=_intent_status(session.payment_intent),
        amount_total=getattr(session, "amount_total", None),
        currency=getattr(session, "currency", None),
        recovery_enabled=bool(getattr(recovery, "enabled", False)) if recovery else False,
    )


_Known = TypeVar("_Known", CheckoutStatus, PaymentStatus)


def _known(kind: type[_Known], value: object, field: str) -> _Known:
    """One of the values Stripe documents for `field`; any other is an answer we cannot act on."""
    try:
        return kind(str(value))
    except ValueError:
        raise PaymentProviderUnavailable(
            f"Stripe answered a Checkout Session {field} we do not know: {value!r}"
        ) from None


def _intent_status(intent: object) -> PaymentIntentStatus | None:
    """The status of an expanded PaymentIntent; None when only its id came back (or Stripe
    named a status it has not documented: it is advice, and unknown advice is none)."""
    status = getattr(intent, "status", None)
    try:
        return PaymentIntentStatus(status) if isinstance(status, str) else None
    except ValueError:
        return None
