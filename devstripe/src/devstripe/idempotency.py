"""Stripe's idempotent requests (API v1), as https://docs.stripe.com/idempotency describes them.

- An answer is saved under its key once the endpoint has started executing, a 500 included;
  a request refused before that (parameter validation, rate limiter, lock timeout) saves
  nothing, so retrying it runs it afresh.
- A key belongs to one request: the same key on another endpoint or with other parameters is
  refused with `idempotency_error`, never run.
- Keys are pruned once they are 24 hours old; after that the key starts a new request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from devstripe.store import StripeError

KEY_LIFETIME_SECONDS = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class _Saved:
    request: str  # method, path and parameters: what the key was first used for
    response: StoredResponse
    saved_at: float


class IdempotencyCache:
    """Answers already given, by key alone, with what each key was first used for."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[str, _Saved] = {}

    def lookup(self, key: str, request: str) -> StoredResponse | None:
        """The saved answer to replay, if any; a key first used for another request is an error."""
        with self._lock:
            saved = self._answers.get(key)
            if saved is not None and self._clock() - saved.saved_at >= KEY_LIFETIME_SECONDS:
                del self._answers[key]
                saved = None
        if saved is None:
            return None
        if saved.request != request:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key.split(' ', 1)[-1]}' if "
                "you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        return saved.response

    def store(self, key: str, request: str, response: StoredResponse) -> None:
        with self._lock:
            self._answers.setdefault(key, _Saved(request, response, self._clock()))

    def reset(self) -> None:
        with self._lock:
            self._answers.clear()
