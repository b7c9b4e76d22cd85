"""Stripe's hosted payment page, as far as a demo needs it: pay or cancel, then the webhook.

`payment-window serve --local-stripe` uses this, so a buyer
clicking Pay on the checkout page can finish a test payment and see the window close as paid.
"""

from __future__ import annotations

import html
import re
from typing import Any

from devstripe.app import DevStripeApp, Receive, Scope, Send
from devstripe.store import JsonObject, StripeError

_PAY_PATH = re.compile(r"^/c/pay/(?P<id>cs_[A-Za-z0-9_]+)$")


class HostedCheckoutApp(DevStripeApp):
    """The local Stripe plus its hosted page; completing a payment sends a signed webhook."""

    def __init__(self, webhook_url: str | None, webhook_secret: str | None) -> None:
        super().__init__(webhook_url=webhook_url, webhook_secret=webhook_secret)

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
        if session["status"] == "open":
            self.store.complete(session["id"], "paid")
        self.deliver_events()


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
