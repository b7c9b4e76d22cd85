"""A Stripe webhook's body, checked: signed by one of our endpoint secrets, recent, not from the
future, and shaped like an event the use case can act on (InvalidWebhook otherwise)."""

from __future__ import annotations

import re
import time
from typing import Any

import stripe

from payment_window.domain.errors import InvalidWebhook

WEBHOOK_TOLERANCE_SECONDS = 300


def verify_with_any(text: str, signature: str, secrets: list[str]) -> None:
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


def refuse_future_timestamp(signature: str) -> None:
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


def checked_event(event: Any) -> dict[str, Any]:
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
