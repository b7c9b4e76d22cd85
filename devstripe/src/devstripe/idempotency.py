"""Stripe's idempotent requests: the same key on the same path replays the first answer."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from devstripe.store import StripeError


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


class IdempotencyCache:
    """Answers already given, by (key, path), with a fingerprint of the parameters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], tuple[str, StoredResponse]] = {}

    def lookup(self, key: str, path: str, fingerprint: str) -> StoredResponse | None:
        """The stored answer to replay; other parameters under the same key are an error."""
        with self._lock:
            found = self._answers.get((key, path))
        if found is None:
            return None
        stored_fingerprint, response = found
        if stored_fingerprint != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        return response

    def store(self, key: str, path: str, fingerprint: str, response: StoredResponse) -> None:
        with self._lock:
            self._answers.setdefault((key, path), (fingerprint, response))

    def reset(self) -> None:
        with self._lock:
            self._answers.clear()
