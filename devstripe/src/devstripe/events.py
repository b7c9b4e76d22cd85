"""Stripe's webhook events: `checkout.session.*` after each change, signed, sent to one endpoint.

Stripe sends events asynchronously, after the API call has answered, and retries failed
deliveries for days; here each event is tried once, since a service that misses one finds the
session's state at its next retrieve anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

from devstripe.store import JsonObject, random_id

log = logging.getLogger(__name__)


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature`: HMAC-SHA256 of `"{t}.{payload}"` with the endpoint secret."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = f"{moment}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def event_for(session: JsonObject, event_type: str, account: str | None = None) -> bytes:
    """A snapshot event; one that happened on a connected account names it (`account`), as
    Stripe does for the events it sends to Connect endpoints."""
    event: JsonObject = {
        "id": random_id("evt_", 24),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": session},
    }
    if account is not None:
        event["account"] = account
    return json.dumps(event).encode()


class WebhookSender:
    """Delivers events to one endpoint with its signing secret; off when either is missing."""

    def __init__(self, url: str | None, secret: str | None) -> None:
        self.url = url
        self._secret = secret
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.url and self._secret)

    def send_later(
        self, event_type: str, session: JsonObject, *, account: str | None = None
    ) -> None:
        """Send in the background, as Stripe does: the API answer does not wait for it."""
        if not self.enabled:
            return
        task = asyncio.get_running_loop().create_task(
            self.send(event_type, session, account=account)
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def send(
        self, event_type: str, session: JsonObject, *, account: str | None = None
    ) -> None:
        if not (self.url and self._secret):
            return
        payload = event_for(session, event_type, account)
        headers = {
            "Stripe-Signature": signature_header(payload, self._secret),
            "Content-Type": "application/json",
        }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(self.url, content=payload, headers=headers)
        except httpx.HTTPError:
            log.warning("webhook %s to %s failed", event_type, self.url, exc_info=True)
