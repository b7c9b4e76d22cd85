"""Stripe's hosted payment page, as far as a demo needs it: pay or cancel, then the webhook.

Only the embedded default (`payment-window serve` without a Stripe key) uses this, so a buyer
clicking Pay on the checkout page can finish a test payment and see the window close as paid.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import time
from typing import Any

import httpx
import structlog

from devstripe.app import DevStripeApp, Receive, Scope, Send
from devstripe.store import JsonObject, StripeError, random_id

log = structlog.get_logger(__name__)

_PAY_PATH = re.compile(r"^/c/pay/(?P<id>cs_[A-Za-z0-9_]+)$")


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature`: HMAC-SHA256 of `"{t}.{payload}"` with the endpoint secret."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = f"{moment}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def event_for(session: JsonObject, event_type: str) -> bytes:
    return json.dumps(
        {
            "id": random_id("evt_", 24),
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": session},
        }
    ).encode()


class HostedCheckoutApp(DevStripeApp):
    """The local Stripe plus its hosted page; completing a payment sends a signed webhook."""

    def __init__(self, webhook_url: str | None, webhook_secret: str | None) -> None:
        super().__init__()
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PAY_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await super().__call__(scope, receive, send)
            return
        session_id = match.group("id")
        try:
            session = self.store.retrieve(session_id)
        except StripeError:
            await _html(send, 404, "<h1>No such checkout session</h1>")
            return
        if scope["method"] == "POST":
            await _drain(receive)
            await self._pay(session)
            target = session.get("success_url") or "/"
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", str(target).encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await _html(send, 200, _page(session))

    async def _pay(self, session: JsonObject) -> None:
        if session["status"] != "open":
            return
        completed = self.store.complete(session["id"], "paid")
        if not (self._webhook_url and self._webhook_secret):
            return
        payload = event_for(completed, "checkout.session.completed")
        headers = {
            "Stripe-Signature": signature_header(payload, self._webhook_secret),
            "Content-Type": "application/json",
        }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(self._webhook_url, content=payload, headers=headers)
        except httpx.HTTPError:
            # Stripe retries webhooks for days; here the expiry task finds the payment anyway.
            log.warning("local_stripe_webhook_failed", url=self._webhook_url, exc_info=True)


async def _drain(receive: Receive) -> None:
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))


async def _html(send: Send, status: int, body: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def _page(session: dict[str, Any]) -> str:
    amount = (session.get("amount_total") or 0) / 100
    currency = html.escape(str(session.get("currency") or "").upper())
    status = html.escape(str(session["status"]))
    cancel = html.escape(str(session.get("cancel_url") or "/"))
    form = (
        '<form method="post"><button type="submit">Pay (test card)</button></form>'
        if session["status"] == "open"
        else f"<p>This checkout session is <strong>{status}</strong>.</p>"
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Test checkout</title><meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.75rem 1.5rem;border-radius:.5rem;border:0;background:#1a56db;
color:#fff;cursor:pointer}}</style></head><body>
<p><em>Local Stripe stand-in: no money moves.</em></p>
<h1>Pay {amount:.2f} {currency}</h1>{form}<p><a href="{cancel}">Back</a></p></body></html>"""
