"""Stripe Checkout through the official SDK; the one place Stripe's exceptions become ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import stripe
import structlog
from stripe.checkout import SessionService

from payment_window.adapters.clock import StripeClock
from payment_window.config import Settings
from payment_window.domain import stripe_calls
from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutRefused,
    CheckoutSessionMissing,
    InvalidWebhook,
    PaymentProviderUnavailable,
)
from payment_window.domain.ports import CheckoutSession, Metrics, StripeBudget
from payment_window.domain.session import PaymentSession

log = structlog.get_logger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
_NOT_OPEN = re.compile(r"Only Checkout Sessions with a status in .* can be expired")
_NOT_OPEN_STATUS = re.compile(r"has a status of `?(\w+)`?")
# A call made while a row is locked gives up after this long (and is not retried in the lock).
LOCKED_CALL_SECONDS = 5.0


class PacedHTTPClient(stripe.AIOHTTPClient):
    """The one place every Stripe request passes, the SDK's own retries included: each takes
    its slot in the deployment's budget (buyer-facing or background, as the use case said), a
    request made while a row is locked is bounded and never retried, a 429 slows everyone, and
    every answer's `Date` teaches us Stripe's clock."""

    def __init__(
        self,
        *,
        timeout: float,
        budget: StripeBudget | None = None,
        stripe_clock: StripeClock | None = None,
        metrics: Metrics | None = None,
        locked_timeout: float = LOCKED_CALL_SECONDS,
    ) -> None:
        super().__init__(timeout=timeout)
        self._budget = budget
        self._stripe_clock = stripe_clock
        self._metrics = metrics
        self._locked_timeout = locked_timeout

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        if self._budget is not None and not stripe_calls.take_prepaid():
            await self._budget.acquire(stripe_calls.call_class())
        sent = self._stripe_clock.process_now() if self._stripe_clock else None
        request = super().request_async(method, url, headers, post_data)
        if stripe_calls.holding_row_lock():
            try:
                answer = await asyncio.wait_for(request, self._locked_timeout)
            except TimeoutError:
                raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                    f"Request timed out after {self._locked_timeout} s (a call under a row lock)",
                    should_retry=False,
                ) from None
        else:
            answer = await request
        content, status, answer_headers = answer
        if self._stripe_clock is not None and sent is not None:
            received = self._stripe_clock.process_now()
            self._stripe_clock.observe_date_header(answer_headers.get("date"), sent, received)
            if status == 200 and method.lower() == "post" and url.endswith("/checkout/sessions"):
                # What Stripe made carries its own clock's second too.
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    created = json.loads(content).get("created")
                    if type(created) is int:
                        self._stripe_clock.observe(
                            datetime.fromtimestamp(created, UTC), sent, received
                        )
        rate_limited = status == 429 and answer_headers.get("stripe-should-retry") != "true"
        if rate_limited and self._budget is not None:
            # The account's rate limit (a lock timeout is one object's, and retried).
            await self._budget.slow_down()
        return content, status, answer_headers

    def _should_retry(
        self,
        response: Any,
        api_connection_error: Any,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if stripe_calls.holding_row_lock():
            return False  # the next attempt is the caller's, with a new idempotency key
        return bool(
            super()._should_retry(response, api_connection_error, num_retries, max_network_retries)
        )


class StripeGateway:
    """The `CheckoutGateway` port on Stripe Checkout Sessions.

    Retries are the SDK's (`PW_STRIPE_MAX_NETWORK_RETRIES`): connection errors, timeouts, 409,
    5xx, and 429s that Stripe marks `Stripe-Should-Retry` (lock timeouts). A plain rate-limit
    429 is not retried by the SDK, on purpose; it surfaces as PaymentProviderUnavailable (and
    halves the shared budget). Every request, retries included, passes `PacedHTTPClient`: a
    request made while the caller holds a row lock is bounded (`LOCKED_CALL_SECONDS`) and never
    retried there.
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
        with _refused_as_checkout_refused(), _unavailable_when_transient():
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
            _missing_as_checkout_session_missing(checkout_session_id),
            _unavailable_when_transient(),
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
                _missing_as_checkout_session_missing(checkout_session_id),
                _unavailable_when_transient(),
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
            if current.status == "open":
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
        _refuse_future_timestamp(signature)
        try:
            text = payload.decode("utf-8")
            _verify_with_any(text, signature, self._webhook_secrets)
            event = json.loads(text)
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise InvalidWebhook(str(error)) from error
        except RecursionError:
            # Thousands of nested arrays exhaust json's recursion; no Stripe event nests so.
            raise InvalidWebhook("webhook body nests too deeply to be a Stripe event") from None
        return _checked_event(event)

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _verify_with_any(text: str, signature: str, secrets: list[str]) -> None:
    """Stripe's check against each endpoint secret in turn; the last refusal if none signs."""
    refusal: stripe.SignatureVerificationError | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                text, signature, secret, WEBHOOK_TOLERANCE_SECONDS
            )
            return
        except stripe.SignatureVerificationError as error:
            refusal = error
    assert refusal is not None
    raise refusal


def _key_mode(api_key: str | None) -> bool | None:
    """Live (True) or test (False) mode of a Stripe secret or restricted key; None if unknown."""
    if not api_key:
        return None
    if api_key.startswith(("sk_live_", "rk_live_")):
        return True
    if api_key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def _refuse_future_timestamp(signature: str) -> None:
    """Stripe's SDK refuses old signatures only; one from the future was made to be replayed."""
    for item in signature.split(","):
        name, _, value = item.strip().partition("=")
        # Thirteen digits is past the year 2286; int() of thousands of digits would raise.
        future = (value.isascii() and value.isdigit()) and (
            len(value) > 12 or int(value) > time.time() + WEBHOOK_TOLERANCE_SECONDS
        )
        if name == "t" and future:
            raise InvalidWebhook("the webhook's signature timestamp lies in the future")


# Stripe's ids are short ASCII (`evt_…`, `cs_…`); anything else would only fail in the store.
_STRIPE_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,128}")
_MAX_URL = 2048
# Unix seconds up to 9999-12-31: later cannot be a date, and fromtimestamp would overflow.
_LATEST_TIMESTAMP = 253_402_300_799


def _checked_event(event: Any) -> dict[str, Any]:
    """The one check of an event's shape: whatever reaches the use case is safe to store."""
    if not isinstance(event, dict):
        raise InvalidWebhook("webhook body is not a Stripe event")
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not _STRIPE_ID.fullmatch(event_id):
        raise InvalidWebhook("the event's id is not a Stripe id")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidWebhook("the event's type is not a Stripe event type")
    account = event.get("account")
    if account is not None and (not isinstance(account, str) or not _STRIPE_ID.fullmatch(account)):
        raise InvalidWebhook("the event's account is not a Stripe account id")
    kind = event.get("object")
    if isinstance(kind, str) and kind.startswith("v2."):
        # A thin (v2) notification: no snapshot to check; the use case acknowledges it.
        return event
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidWebhook("webhook body is not a Stripe event (no data.object)")
    obj: dict[str, Any] = data["object"]
    if event_type.startswith("checkout.session."):
        checkout_id, expires_at, url = obj.get("id"), obj.get("expires_at"), obj.get("url")
        if not isinstance(checkout_id, str) or not _STRIPE_ID.fullmatch(checkout_id):
            raise InvalidWebhook("the event's Checkout Session id is not a Stripe id")
        if expires_at is not None and (
            type(expires_at) is not int or not 0 <= expires_at <= _LATEST_TIMESTAMP
        ):
            raise InvalidWebhook("the event's expires_at is not a Unix time")
        if url is not None and (not isinstance(url, str) or len(url) > _MAX_URL or "\x00" in url):
            raise InvalidWebhook("the event's url is not a URL")
        for name in ("status", "payment_status"):
            value = obj.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                raise InvalidWebhook(f"the event's {name} is not a Stripe status")
    return event


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
        status=str(session.status),
        payment_status=str(session.payment_status),
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        payment_intent_status=_intent_status(session.payment_intent),
        amount_total=getattr(session, "amount_total", None),
        currency=getattr(session, "currency", None),
        recovery_enabled=bool(getattr(recovery, "enabled", False)) if recovery else False,
    )


def _intent_status(intent: object) -> str | None:
    """The status of an expanded PaymentIntent; None when only its id came back."""
    status = getattr(intent, "status", None)
    return status if isinstance(status, str) else None


@contextmanager
def _missing_as_checkout_session_missing(checkout_session_id: str) -> Iterator[None]:
    """Stripe's 404 `resource_missing` for the session: no retry will ever find it."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        if error.http_status == 404 and error.code == "resource_missing":
            raise CheckoutSessionMissing(checkout_session_id) from error
        raise


@contextmanager
def _refused_as_checkout_refused() -> Iterator[None]:
    """Stripe refusing a create's parameters is the caller's problem, in Stripe's words."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        message = (error.error.message if error.error else None) or error.user_message or ""
        param = error.error.param if error.error else None
        raise CheckoutRefused(error.code, message or str(error), param) from error


@contextmanager
def _unavailable_when_transient() -> Iterator[None]:
    """Stripe unreachable, failing or overloaded becomes ours to report; other errors are bugs
    (a bad key, an unknown id, a refused parameter) and stay Stripe's."""
    try:
        yield
    except stripe.StripeError as error:
        transient = (
            isinstance(error, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError)
            or (error.http_status or 0) >= 500
        )
        if transient:
            raise PaymentProviderUnavailable(
                f"Stripe: {error.user_message or error}", kind=_error_kind(error)
            ) from error
        raise


def _error_kind(error: stripe.StripeError) -> str:
    """A bounded label for the metrics: what sort of trouble Stripe is in."""
    if isinstance(error, stripe.RateLimitError) or error.http_status == 429:
        return "rate_limited"
    if isinstance(error, stripe.APIConnectionError):
        return "timeout" if "timed out" in str(error).lower() else "connection"
    if (error.http_status or 0) >= 500:
        return "server_error"
    return "other"
