"""A structlog processor that keeps secrets and bearer tokens out of log lines.

Two nets: the configured secrets themselves (whatever their shape), and anything shaped like a
JWT or a Stripe key, since a token or key we were never told about can still arrive in an
exception message, a vendor's error text or a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from pydantic import SecretStr

from payment_window.config import Settings

# header.payload[.signature]: base64url JSON objects always begin with `eyJ` (`{"`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
# Secret, restricted and publishable-looking keys, and webhook signing secrets; the last four
# characters stay, as in Stripe's own dashboard, so a key can still be told apart from another.
_STRIPE = re.compile(r"\b((?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]*([A-Za-z0-9]{4})\b")
JWT_MASK = "[jwt redacted]"
SECRET_MASK = "[secret redacted]"
# Shorter configured "secrets" (a test's `x`) would blank out ordinary words.
MIN_SECRET_LENGTH = 8


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret, JWT and Stripe key masked."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    text = _JWT.sub(JWT_MASK, text)
    return _STRIPE.sub(r"\1…\2", text)


def secrets_of(settings: Settings) -> list[str]:
    """The configured secret values worth looking for, longest first (a secret that contains
    another must be masked whole)."""
    values = [
        value.get_secret_value()
        for value in vars(settings).values()
        if isinstance(value, SecretStr)
    ]
    return sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


class Redactor:
    """The processor: masks secrets in every string of the event dict, nested ones included."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(secrets)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            event_dict[key] = self._clean(value)
        return event_dict

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask(value, self._secrets)
        if isinstance(value, Mapping):
            return {key: self._clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(item) for item in value]
        return value


def redact_secrets(settings: Settings) -> Redactor:
    """The processor for a process configured with `settings`."""
    return Redactor(secrets_of(settings))
