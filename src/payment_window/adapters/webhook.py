"""Outgoing webhooks: each outbox message POSTed to one endpoint, signed per Standard Webhooks.

Body `{type, timestamp, data}`; headers `webhook-id` (the outbox row's id: the same on every
retry, receivers deduplicate on it), `webhook-timestamp` (this attempt, Unix seconds) and
`webhook-signature` (`v1,<base64 HMAC-SHA256>`, one per secret during a roll, space-separated),
made by the `standardwebhooks` reference implementation. A 2xx is delivered; anything else or a
timeout is a failure the outbox retries; 410 Gone also disables the endpoint (and alerts).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import structlog
from standardwebhooks.webhooks import Webhook

from payment_window.domain.events import OutboxEnvelope
from payment_window.domain.outgoing_webhooks import endpoint_destination, webhook_body
from payment_window.domain.ports import Clock, DeliveryFailed, Metrics

log = structlog.get_logger(__name__)

USER_AGENT = "payment-window-webhooks/1"
SUCCESS_EVERY = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Seconds one attempt may take, connecting and answering together; the outbox retries."""

    timeout: float = 10.0


class EndpointState(Protocol):
    """Where the sink records each attempt's outcome (adapters.webhook_endpoints)."""

    async def ensure(self, destination: str, url: str) -> None: ...

    async def record_success(self, destination: str, at: datetime) -> None: ...

    async def record_failure(self, destination: str, error: str, at: datetime) -> None: ...

    async def disable(self, destination: str, reason: str, at: datetime) -> None: ...


def signers(secrets: Sequence[str]) -> list[Webhook]:
    """One signer per `whsec_…` secret (several while a secret is being rolled)."""
    return [Webhook(secret) for secret in secrets]


class WebhookSink:
    """One endpoint. Raises DeliveryFailed on anything but a 2xx, so the outbox retries."""

    def __init__(
        self,
        url: str,
        secrets: Sequence[str],
        client: httpx.AsyncClient,
        state: EndpointState,
        clock: Clock,
        metrics: Metrics,
        options: WebhookOptions = WebhookOptions(),
    ) -> None:
        if not secrets:
            raise ValueError("a webhook endpoint needs at least one signing secret")
        self.url = url
        self.destination = endpoint_destination(url)
        self._signers = signers(secrets)
        self._client = client
        self._state = state
        self._clock = clock
        self._metrics = metrics
        self._timeout = options.timeout
        self._known = False
        self._recorded_at: datetime | None = None
        self._failing = True  # until a success is recorded: the first one always is

    def headers(self, message_id: str, body: str) -> dict[str, str]:
        """The Standard Webhooks headers for one attempt, signed now."""
        now = self._clock.now()
        signature = " ".join(signer.sign(message_id, now, body) for signer in self._signers)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }

    async def deliver(self, message: OutboxEnvelope) -> None:
        if not self._known:
            await self._state.ensure(self.destination, self.url)
            self._known = True
        body = json.dumps(webhook_body(message), separators=(",", ":"))
        tags = [f"endpoint:{self.destination}"]
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    self.url, content=body.encode(), headers=self.headers(message.id, body)
                )
        except (httpx.HTTPError, TimeoutError) as error:
            if isinstance(error, TimeoutError | httpx.TimeoutException):
                detail = f"no answer within {self._timeout:g} s"
            else:
                detail = f"{type(error).__name__}: {error}".rstrip(": ")
            await self._failed(f"POST {self.url}: {detail}")
            raise DeliveryFailed(f"webhook {self.url}: {detail}") from error
        status = response.status_code
        if 200 <= status < 300:
            await self._succeeded()
            return
        if status == 410:
            reason = f"{self.url} answered 410 Gone"
            await self._state.disable(self.destination, reason, self._clock.now())
            log.error(
                "webhook_endpoint_disabled",
                endpoint=self.url,
                destination=self.destination,
                detail="410 Gone: its messages wait in the outbox until "
                "`payment-window relay --enable-endpoint URL`",
            )
            self._metrics.increment("payments.webhook.disabled", tags=tags)
            await self._failed(reason)
            raise DeliveryFailed(f"webhook {reason}; endpoint disabled")
        await self._failed(f"{self.url} answered {status}")
        raise DeliveryFailed(f"webhook {self.url} answered {status}")

    async def _succeeded(self) -> None:
        """Record a success: at once after a failure, else at most once a second (the state is
        for operators; a write per delivery would double the relay's writes)."""
        now = self._clock.now()
        if self._recorded_at is None or now - self._recorded_at >= SUCCESS_EVERY or self._failing:
            self._recorded_at, self._failing = now, False
            await self._state.record_success(self.destination, now)

    async def close(self) -> None:
        """Close the HTTP client (shared by every endpoint's sink)."""
        await self._client.aclose()

    async def _failed(self, error: str) -> None:
        self._failing = True
        await self._state.record_failure(self.destination, error, self._clock.now())


def create_webhook_client(options: WebhookOptions = WebhookOptions()) -> httpx.AsyncClient:
    """Redirects are not followed (a moved endpoint is a failure to look at, not to chase)."""
    return httpx.AsyncClient(timeout=options.timeout, follow_redirects=False)
