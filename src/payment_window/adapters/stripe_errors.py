"""Stripe's exceptions as ours: the one place the SDK's errors are translated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from payment_window.domain.errors import (
    CheckoutRefused,
    CheckoutSessionMissing,
    PaymentProviderUnavailable,
)


@contextmanager
def missing_as_checkout_session_missing(checkout_session_id: str) -> Iterator[None]:
    """Stripe's 404 `resource_missing` for the session: no retry will ever find it."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        if error.http_status == 404 and error.code == "resource_missing":
            raise CheckoutSessionMissing(checkout_session_id) from error
        raise


@contextmanager
def refused_as_checkout_refused() -> Iterator[None]:
    """Stripe refusing a create's parameters is the caller's problem, in Stripe's words."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        message = (error.error.message if error.error else None) or error.user_message or ""
        param = error.error.param if error.error else None
        raise CheckoutRefused(error.code, message or str(error), param) from error


@contextmanager
def unavailable_when_transient() -> Iterator[None]:
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
                f"Stripe: {error.user_message or error}", kind=error_kind(error)
            ) from error
        raise


def error_kind(error: stripe.StripeError) -> str:
    """A bounded label for the metrics: what sort of trouble Stripe is in."""
    if isinstance(error, stripe.RateLimitError) or error.http_status == 429:
        return "rate_limited"
    if isinstance(error, stripe.APIConnectionError):
        return "timeout" if "timed out" in str(error).lower() else "connection"
    if (error.http_status or 0) >= 500:
        return "server_error"
    return "other"
