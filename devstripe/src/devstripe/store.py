"""Checkout Sessions kept in memory, with the rules Stripe applies to them."""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from devstripe.minimums import MINIMUM_CHARGE, too_small_message

MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 60 * 60
MAX_METADATA_KEYS = 50
_ALPHANUMERIC = string.ascii_letters + string.digits
_MODES = ("payment", "setup", "subscription")

JsonObject = dict[str, Any]
# A test control's lookup: the session whichever account it lives on.
ANY_ACCOUNT = "*"


class StripeError(Exception):
    """An error answered in Stripe's shape: `{"error": {"type", "message", ...}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> JsonObject:
        error: JsonObject = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _integer(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


def _boolean(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise StripeError(
        400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param
    )


class CheckoutStore:
    """Every Checkout Session this server knows; safe to use from any thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._intents: dict[str, str] = {}
        self._sessions: dict[str, JsonObject] = {}
        # The account each session lives on (the `Stripe-Account` it was made with; None: the
        # platform's), and the parameters it was made with (the Connect terms among them).
        self._accounts: dict[str, str | None] = {}
        self._params: dict[str, JsonObject] = {}
        self._intent_data: dict[str, JsonObject] = {}
        self._events: list[tuple[str, JsonObject, str | None]] = []

    def take_events(self) -> list[tuple[str, JsonObject, str | None]]:
        """The `checkout.session.*` events the changes since the last call owe, oldest first,
        each with the connected account it happened on (None: the platform)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def account_of(self, session_id: str) -> str | None:
        with self._lock:
            self._get(session_id, ANY_ACCOUNT)
            return self._accounts.get(session_id)

    def params_of(self, session_id: str) -> JsonObject:
        """The parameters the session was created with (a test's view, not a Stripe call)."""
        with self._lock:
            self._get(session_id, ANY_ACCOUNT)
            return copy.deepcopy(self._params.get(session_id, {}))

    def _event(self, event_type: str, session: JsonObject) -> None:
        self._events.append((event_type, copy.deepcopy(session), self._accounts.get(session["id"])))

    def create(
        self, params: Mapping[str, Any], base_url: str, account: str | None = None
    ) -> JsonObject:
        """Validate `params` the way Stripe does and store a new open session on `account`."""
        now = self._clock()
        mode = params.get("mode")
        if not mode:
            raise _missing("mode")
        if mode not in _MODES:
            raise StripeError(
                400,
                f"Invalid mode: must be one of {', '.join(_MODES)}",
                code="parameter_invalid_string",
                param="mode",
            )
        currency, subtotal = _line_items(params.get("line_items"), mode)
        _check_minimum(currency, subtotal)
        intent_data = _payment_intent_data(params.get("payment_intent_data"), account, subtotal)
        session_id = random_id("cs_test_", 58)
        session: JsonObject = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": _after_expiration(params.get("after_expiration")),
            "allow_promotion_codes": None,
            "amount_subtotal": subtotal,
            "amount_total": subtotal,
            # The fields Stripe's schema marks required, with the values a plain session has.
            "automatic_tax": {"enabled": False, "status": None},
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "consent": None,
            "consent_collection": None,
            "created": int(now),
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {"shipping_address": None, "submit": None},
            "customer": None,
            "customer_creation": "if_required" if mode == "payment" else "always",
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": _expires_at(params.get("expires_at"), now),
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": _metadata(params.get("metadata")),
            "mode": mode,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_options": {},
            "payment_method_types": list(params.get("payment_method_types") or ["card"]),
            "payment_status": "unpaid",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_details": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": params.get("submit_type"),
            "subscription": None,
            "success_url": params.get("success_url"),
            "tax_id_collection": {"enabled": False},
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "url": f"{base_url.rstrip('/')}/c/pay/{session_id}",
        }
        with self._lock:
            self._sessions[session_id] = session
            self._accounts[session_id] = account
            self._params[session_id] = copy.deepcopy(dict(params))
            self._intent_data[session_id] = intent_data
            return copy.deepcopy(session)

    def retrieve(self, session_id: str, account: str | None = ANY_ACCOUNT) -> JsonObject:
        with self._lock:
            return copy.deepcopy(self._get(session_id, account))

    def list(
        self,
        limit: int = 10,
        starting_after: str | None = None,
        account: str | None = None,
        filters: Mapping[str, Any] | None = None,
        ending_before: str | None = None,
    ) -> JsonObject:
        """Newest first, paginated by cursor like every Stripe list endpoint; only the
        sessions of `account`, and only those matching `filters` (status, payment_intent,
        customer, created[gt|gte|lt|lte] or created, client_reference_id)."""
        if not 1 <= limit <= 100:
            raise StripeError(
                400,
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        with self._lock:
            ordered = [
                i
                for i in reversed(self._sessions)
                if self._accounts.get(i) == account
                and _matches(self._get(i, account), filters or {})
            ]
            start = 0
            end = len(ordered)
            if starting_after is not None:
                self._get(starting_after, account)
                start = ordered.index(starting_after) + 1 if starting_after in ordered else end
            if ending_before is not None:
                self._get(ending_before, account)
                end = ordered.index(ending_before) if ending_before in ordered else 0
                start = max(start, end - limit)
            page = [
                copy.deepcopy(self._get(i, account))
                for i in ordered[start : min(end, start + limit)]
            ]
            has_more = (start + limit < end) if ending_before is None else start > 0
        return {
            "object": "list",
            "data": page,
            "has_more": has_more,
            "url": "/v1/checkout/sessions",
        }

    def expire(self, session_id: str, account: str | None = ANY_ACCOUNT) -> JsonObject:
        with self._lock:
            session = self._get(session_id, account)
            if session["status"] != "open":
                raise StripeError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{session['status']}`.",
                )
            session.update(status="expired", url=None)
            self._event("checkout.session.expired", session)
            return copy.deepcopy(session)

    def complete(self, session_id: str, payment_status: str = "paid") -> JsonObject:
        """What the buyer finishing the hosted page does (not a Stripe API call)."""
        if payment_status not in ("paid", "unpaid", "no_payment_required"):
            raise StripeError(
                400, f"Invalid payment_status: {payment_status}", param="payment_status"
            )
        with self._lock:
            session = self._get(session_id, ANY_ACCOUNT)
            if session["status"] != "open":
                raise StripeError(400, f"This Checkout Session is {session['status']}.")
            intent = random_id("pi_")
            # A delayed payment method (a bank debit) leaves its PaymentIntent processing.
            self._intents[intent] = "succeeded" if payment_status != "unpaid" else "processing"
            self._intent_data[intent] = self._intent_data.get(session_id, {})
            session.update(
                status="complete",
                url=None,
                payment_status=payment_status,
                payment_intent=intent,
            )
            self._event("checkout.session.completed", session)
            return copy.deepcopy(session)

    def settle_delayed_payment(self, session_id: str, *, succeeded: bool) -> JsonObject:
        """The bank answers for a delayed payment method (not a Stripe API call): the session
        is paid, or its PaymentIntent needs another payment method, as Stripe reports it."""
        with self._lock:
            session = self._get(session_id, ANY_ACCOUNT)
            intent = str(session.get("payment_intent"))
            if session["status"] != "complete" or self._intents.get(intent) != "processing":
                raise StripeError(400, f"Checkout Session {session_id} has no pending payment.")
            self._intents[intent] = "succeeded" if succeeded else "requires_payment_method"
            if succeeded:
                session["payment_status"] = "paid"
            event = "async_payment_succeeded" if succeeded else "async_payment_failed"
            self._event(f"checkout.session.{event}", session)
            return copy.deepcopy(session)

    def payment_intent(self, intent_id: str) -> JsonObject:
        """The expanded `payment_intent` of a session (only the fields we imitate)."""
        with self._lock:
            status = self._intents[intent_id]
            connect = copy.deepcopy(self._intent_data.get(intent_id, {}))
        return {"id": intent_id, "object": "payment_intent", "status": status, **connect}

    def forget(self, session_id: str) -> None:
        """Lose a session (a test control): as if it were made with another account's key."""
        with self._lock:
            del self._sessions[session_id]

    def reset(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._intents.clear()
            self._events.clear()
            self._accounts.clear()
            self._params.clear()
            self._intent_data.clear()

    def _get(self, session_id: str, account: str | None = ANY_ACCOUNT) -> JsonObject:
        session = self._sessions.get(session_id)
        if session is not None and account != ANY_ACCOUNT and self._accounts[session_id] != account:
            # Objects are scoped to their account: from another one, the session does not exist.
            session = None
        if session is None:
            raise StripeError(
                404,
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
            )
        # Stripe expires sessions itself once `expires_at` passes.
        if session["status"] == "open" and self._clock() >= session["expires_at"]:
            session.update(status="expired", url=None)
            self._event("checkout.session.expired", session)
        return session


def _line_items(items: Any, mode: str) -> tuple[str | None, int | None]:
    if not items:
        if mode == "payment":
            raise _missing("line_items")
        return None, None
    if not isinstance(items, list):
        raise StripeError(400, "Invalid array", code="parameter_invalid_array", param="line_items")
    currencies: set[str] = set()
    total = 0
    for index, item in enumerate(items):
        name = f"line_items[{index}]"
        if not isinstance(item, dict):
            raise StripeError(400, "Invalid object", param=name)
        quantity = _integer(item.get("quantity", 1), f"{name}[quantity]")
        price = item.get("price_data")
        if not isinstance(price, dict):
            if item.get("price"):
                raise StripeError(
                    404,
                    f"No such price: '{item['price']}'",
                    code="resource_missing",
                    param=f"{name}[price]",
                )
            raise _missing(f"{name}[price_data]")
        for required in ("currency", "unit_amount"):
            if price.get(required) in (None, ""):
                raise _missing(f"{name}[price_data][{required}]")
        product = price.get("product_data")
        if not price.get("product") and not (isinstance(product, dict) and product.get("name")):
            raise _missing(f"{name}[price_data][product_data][name]")
        unit_amount = _integer(price["unit_amount"], f"{name}[price_data][unit_amount]")
        if unit_amount < 0 or quantity < 1:
            raise StripeError(
                400, "Invalid non-negative integer", code="parameter_invalid_integer", param=name
            )
        currencies.add(str(price["currency"]).lower())
        total += unit_amount * quantity
    if len(currencies) > 1:
        raise StripeError(400, "All line items must use the same currency.", param="line_items")
    return currencies.pop(), total


def _matches(session: JsonObject, filters: Mapping[str, Any]) -> bool:
    """A list filter: equal fields, and `created` as a number or a range."""
    for name in ("status", "payment_intent", "customer", "client_reference_id"):
        if name in filters and session.get(name) != filters[name]:
            return False
    created = filters.get("created")
    if created is None:
        return True
    if not isinstance(created, dict):
        return bool(session["created"] == _integer(created, "created"))
    bounds = {
        "gt": lambda at, v: at > v,
        "gte": lambda at, v: at >= v,
        "lt": lambda at, v: at < v,
        "lte": lambda at, v: at <= v,
    }
    return all(
        bounds[op](session["created"], _integer(value, f"created[{op}]"))
        for op, value in created.items()
        if op in bounds
    )


def _account_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.startswith("acct_"):
        raise StripeError(
            400,
            f"No such destination: '{value}'"
            if "destination" in param
            else f"Invalid account: {value}",
            code="resource_missing" if "destination" in param else "parameter_invalid_string",
            param=param,
        )
    return value


def _payment_intent_data(value: Any, account: str | None, amount: int | None) -> JsonObject:
    """The Connect terms a PaymentIntent would carry: the transfer destination, the platform's
    fee and `on_behalf_of`, checked as Stripe checks them."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise StripeError(
            400, "Invalid hash", code="parameter_invalid_hash", param="payment_intent_data"
        )
    terms: JsonObject = {}
    fee = value.get("application_fee_amount")
    if fee is not None:
        fee_amount = _integer(fee, "payment_intent_data[application_fee_amount]")
        if fee_amount < 0 or (amount is not None and fee_amount > amount):
            raise StripeError(
                400,
                "The application fee must be between 0 and the amount of the charge.",
                param="payment_intent_data[application_fee_amount]",
            )
        terms["application_fee_amount"] = fee_amount
    transfer = value.get("transfer_data")
    if transfer is not None:
        if account is not None:
            raise StripeError(
                400,
                "You cannot set transfer_data on a charge made on a connected account.",
                param="payment_intent_data[transfer_data]",
            )
        if not isinstance(transfer, dict) or "destination" not in transfer:
            raise _missing("payment_intent_data[transfer_data][destination]")
        destination = _account_id(
            transfer["destination"], "payment_intent_data[transfer_data][destination]"
        )
        terms["transfer_data"] = {"destination": destination}
    on_behalf_of = value.get("on_behalf_of")
    if on_behalf_of is not None:
        terms["on_behalf_of"] = _account_id(on_behalf_of, "payment_intent_data[on_behalf_of]")
    return terms


def _check_minimum(currency: str | None, amount: int | None) -> None:
    # Stripe refuses a total below its minimum charge for the currency, without naming a param.
    if currency is None or amount is None or currency not in MINIMUM_CHARGE:
        return
    if amount < MINIMUM_CHARGE[currency]:
        raise StripeError(400, too_small_message(currency), code="amount_too_small")


def _expires_at(value: Any, now: float) -> int:
    if value in (None, ""):
        return int(now) + MAX_EXPIRY_SECONDS
    expires_at = _integer(value, "expires_at")
    if expires_at - now < MIN_EXPIRY_SECONDS:
        raise StripeError(
            400,
            "The `expires_at` timestamp must be at least 30 minutes from "
            "Checkout Session creation.",
            param="expires_at",
        )
    if expires_at - now > MAX_EXPIRY_SECONDS:
        raise StripeError(
            400,
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    return expires_at


def _after_expiration(value: Any) -> JsonObject | None:
    if not value:
        return None
    recovery = value.get("recovery") if isinstance(value, dict) else None
    if not isinstance(recovery, dict) or "enabled" not in recovery:
        raise _missing("after_expiration[recovery][enabled]")
    return {
        "recovery": {
            "allow_promotion_codes": _boolean(
                recovery.get("allow_promotion_codes", "false"),
                "after_expiration[recovery][allow_promotion_codes]",
            ),
            "enabled": _boolean(recovery["enabled"], "after_expiration[recovery][enabled]"),
            "expires_at": None,
            "url": None,
        }
    }


def _metadata(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid hash", code="parameter_invalid_hash", param="metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise StripeError(400, "Metadata can have at most 50 keys.", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or len(str(item)) > 500:
            raise StripeError(
                400,
                "Metadata keys are limited to 40 characters and values to 500 characters.",
                param=f"metadata[{key}]",
            )
    # An empty value unsets a key, as in Stripe.
    return {key: str(item) for key, item in value.items() if item != ""}
