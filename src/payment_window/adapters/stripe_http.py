"""The HTTP client every Stripe request passes: budget, row-lock bound, 429s, Stripe's clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from payment_window.adapters.clock import StripeClock
from payment_window.domain import stripe_calls
from payment_window.domain.ports import Metrics, StripeBudget

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
