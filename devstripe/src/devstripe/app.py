"""The ASGI app: Stripe's Checkout Session endpoints plus `/_test/` controls."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from devstripe import spec
from devstripe.control import CallLog, Fault, FaultKind, Faults
from devstripe.events import WebhookSender
from devstripe.idempotency import IdempotencyCache, StoredResponse
from devstripe.store import CheckoutStore, JsonObject, StripeError, random_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SESSION = r"(?P<id>[A-Za-z0-9_]+)"
_RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
_LOCK_TIMEOUT_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe process "
    "is currently accessing it. If you see this error intermittently, retry the request."
)
_NO_API_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


def _injected_error(fault: Fault) -> StripeError:
    if fault.message:
        return StripeError(fault.status, fault.message)
    return StripeError(fault.status, "An unknown error occurred", type_="api_error")


class _DropConnection(Exception):
    """Close the socket without answering, so the client sees a real connection error."""


class DevStripeApp:
    """A stateful Stripe look-alike for Checkout Sessions; state lives on the instance."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        connect_webhook_url: str | None = None,
        connect_webhook_secret: str | None = None,
    ) -> None:
        self.store = CheckoutStore(clock)
        self.faults = Faults(clock)
        self.calls = CallLog(clock)
        self.idempotency = IdempotencyCache(clock)
        self.webhooks = WebhookSender(webhook_url, webhook_secret)
        # A Connect endpoint: events on connected accounts, signed with its own secret.
        self.connect_webhooks = WebhookSender(connect_webhook_url, connect_webhook_secret)
        self._clock = clock
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., JsonObject]]] = [
            ("POST", re.compile(r"/v1/checkout/sessions"), self._create),
            ("GET", re.compile(r"/v1/checkout/sessions"), self._list),
            ("GET", re.compile(rf"/v1/checkout/sessions/{_SESSION}"), self._retrieve),
            ("POST", re.compile(rf"/v1/checkout/sessions/{_SESSION}/expire"), self._expire),
            ("POST", re.compile(rf"/_test/checkout/sessions/{_SESSION}/complete"), self._complete),
            ("POST", re.compile(r"/_test/faults"), self._add_fault),
            ("DELETE", re.compile(r"/_test/faults"), self._clear_faults),
            ("GET", re.compile(r"/_test/calls"), lambda **_: self.calls.snapshot()),
            ("GET", re.compile(r"/_test/calls/timeline"), lambda **_: self.calls.timeline()),
            ("DELETE", re.compile(r"/_test/calls"), self._reset_calls),
            ("POST", re.compile(r"/_test/reset"), self._reset),
            ("POST", re.compile(r"/_test/seed"), self._seed),
            ("GET", re.compile(r"/_test/health"), lambda **_: {"ok": True}),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        request = await _Request.read(scope, receive)
        try:
            status, body, headers = await self._answer(request)
        except _DropConnection:
            await _drop(receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"request-id", random_id("req_", 14).encode()),
                    # Stripe's clock, as every answer of Stripe's carries it.
                    (b"date", formatdate(self._clock(), usegmt=True).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, request: _Request) -> tuple[int, bytes, dict[str, str]]:
        if not request.path.startswith("/v1/"):
            try:
                handler, path_params = self._route(request)
                return 200, _dump(handler(request=request, **path_params)), {}
            except StripeError as error:
                return error.status, _dump(error.body()), error.headers
            finally:
                self.deliver_events()
        self.calls.record(request.method, request.path, request.account)
        fault = self.faults.take(request.path)
        try:
            status, body, headers = await self._stripe_call(request, fault)
        except StripeError as error:
            status, body, headers = error.status, _dump(error.body()), error.headers
        finally:
            self.deliver_events()
        if fault is not None and fault.after and fault.kind is FaultKind.DROP:
            raise _DropConnection
        self.calls.answered(status)
        return status, body, headers

    async def _stripe_call(
        self, request: _Request, fault: Fault | None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One `/v1/` request, in Stripe's order: the edge (connection, rate limiter, auth),
        then the idempotency layer, then the endpoint."""
        if fault is not None and not fault.after and fault.kind is not FaultKind.ERROR:
            await self._before(fault)
        handler, path_params = self._route(request)
        if not request.headers.get("authorization", "").startswith("Bearer "):
            raise StripeError(401, _NO_API_KEY_MESSAGE)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if not key:
            if fault is not None and fault.kind is FaultKind.ERROR:
                raise _injected_error(fault)
            return 200, _dump(handler(request=request, **path_params)), {}
        # Stripe keys idempotency per account: the same key on two accounts is two requests.
        key = f"{request.account or 'platform'} {key}"
        what = json.dumps([request.method, request.path, sorted(request.form_pairs)])
        stored = self.idempotency.lookup(key, what)
        if stored is not None:
            return (
                stored.status,
                stored.body,
                {"Idempotency-Key": key.split(" ", 1)[-1], "Idempotent-Replayed": "true"},
            )
        if fault is not None and fault.kind is FaultKind.ERROR:
            # The endpoint began and failed: Stripe saves a 5xx and replays it for the key.
            error = _injected_error(fault)
            if error.status >= 500:
                self.idempotency.store(key, what, StoredResponse(error.status, _dump(error.body())))
            raise error
        # A refusal raised here (validation) saves nothing, as at Stripe.
        body = _dump(handler(request=request, **path_params))
        self.idempotency.store(key, what, StoredResponse(200, body))
        return 200, body, {"Idempotency-Key": key.split(" ", 1)[-1]}

    def deliver_events(self) -> None:
        """Send the webhook events the last changes owe (in the background, as Stripe does)."""
        for event_type, session, account in self.store.take_events():
            if account is None:
                self.webhooks.send_later(event_type, session)
            else:
                self.connect_webhooks.send_later(event_type, session, account=account)

    async def _before(self, fault: Fault) -> None:
        if fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.delay)
        elif fault.kind is FaultKind.DROP:
            raise _DropConnection
        elif fault.kind is FaultKind.RATE_LIMIT:
            # Rejected by the rate limiter before any endpoint ran: nothing saved for the key.
            raise StripeError(429, _RATE_LIMIT_MESSAGE, code="rate_limit")
        elif fault.kind is FaultKind.LOCK_TIMEOUT:
            raise StripeError(
                429,
                _LOCK_TIMEOUT_MESSAGE,
                code="lock_timeout",
                headers={"Stripe-Should-Retry": "true"},
            )

    def _route(self, request: _Request) -> tuple[Callable[..., JsonObject], dict[str, str]]:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match:
                if method == request.method:
                    return handler, match.groupdict()
                allowed = True
        if allowed:
            raise StripeError(405, f"Method {request.method} is not allowed on {request.path}")
        raise StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}).")

    def _create(self, request: _Request) -> JsonObject:
        spec.check_body("post", "/v1/checkout/sessions", request.params)
        return self.store.create(request.params, request.base_url, request.account)

    def _list(self, request: _Request) -> JsonObject:
        params = request.params
        limit = params.get("limit", "10")
        if not str(limit).isdigit():
            raise StripeError(400, f"Invalid integer: {limit}", param="limit")
        return self.store.list(
            int(limit),
            params.get("starting_after"),
            request.account,
            filters=params,
            ending_before=params.get("ending_before"),
        )

    def _retrieve(self, request: _Request, id: str) -> JsonObject:
        session = self.store.retrieve(id, request.account)
        expand = request.params.get("expand") or []
        expand = list(expand.values()) if isinstance(expand, dict) else expand
        if "payment_intent" in expand and session.get("payment_intent"):
            session["payment_intent"] = self.store.payment_intent(session["payment_intent"])
        return session

    def _expire(self, request: _Request, id: str) -> JsonObject:
        spec.check_body("post", "/v1/checkout/sessions/{session}/expire", request.params)
        return self.store.expire(id, request.account)

    def _complete(self, request: _Request, id: str) -> JsonObject:
        return self.store.complete(id, str(request.params.get("payment_status", "paid")))

    def _seed(self, request: _Request) -> JsonObject:
        """Create `count` open sessions at once (benchmarks): not a Stripe call, not counted."""
        count = request.params.get("count", 1)
        if not str(count).isdigit() or not 1 <= int(count) <= 100_000:
            raise StripeError(400, f"Invalid count: {count}", param="count")
        params = {
            "mode": "payment",
            "expires_at": request.params.get("expires_at"),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.params.get("currency", "eur"),
                        "unit_amount": request.params.get("amount", 1000),
                        "product_data": {"name": "seeded"},
                    },
                }
            ],
        }
        created = [self.store.create(params, request.base_url) for _ in range(int(count))]
        return {
            "object": "list",
            "data": [{k: s[k] for k in ("id", "url", "expires_at")} for s in created],
        }

    def _add_fault(self, request: _Request) -> JsonObject:
        try:
            self.faults.add(Fault.from_json(request.params, self._clock))
        except (KeyError, ValueError, TypeError) as error:
            raise StripeError(400, f"Invalid fault: {error}") from None
        return {"ok": True}

    def _clear_faults(self, request: _Request) -> JsonObject:
        self.faults.clear()
        return {"ok": True}

    def _reset_calls(self, request: _Request) -> JsonObject:
        self.calls.reset()
        return {"ok": True}

    def _reset(self, request: _Request) -> JsonObject:
        self.reset()
        return {"ok": True}

    def reset(self) -> None:
        """Forget every session, fault, count and idempotent answer."""
        self.store.reset()
        self.faults.clear()
        self.calls.reset()
        self.idempotency.reset()


class _Request:
    def __init__(self, scope: Scope, body: bytes) -> None:
        self.method: str = scope["method"].upper()
        self.path: str = scope["path"].rstrip("/") or "/"
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        # Stripe Connect: the connected account the request acts on; None: the platform.
        self.account: str | None = self.headers.get("stripe-account") or None
        host = self.headers.get("host", "127.0.0.1")
        self.base_url = f"{scope.get('scheme', 'http')}://{host}"
        query = scope.get("query_string", b"").decode()
        if self.headers.get("content-type", "").startswith("application/json") and body:
            self.form_pairs: list[tuple[str, str]] = []
            self.params: dict[str, Any] = dict(json.loads(body))
        else:
            self.form_pairs = parse_qsl(body.decode(), keep_blank_values=True)
            self.params = decode_form([*parse_qsl(query, keep_blank_values=True), *self.form_pairs])

    @classmethod
    async def read(cls, scope: Scope, receive: Receive) -> _Request:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        return cls(scope, b"".join(chunks))


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn Stripe's `a[b][0][c]=v` form keys back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head, *re.findall(r"\[([^\]]*)\]", "[" + rest)] if rest else [head]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        last = parts[-1] or str(len(node))  # `expand[]=x` appends
        node[last] = value
    return _listify(root)  # type: ignore[no-any-return]


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v) for k, v in value.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _dump(obj: JsonObject) -> bytes:
    return json.dumps(obj, indent=2).encode()


async def _drop(receive: Receive, send: Send) -> None:
    # uvicorn's `send` is a bound method of the request cycle, which holds the transport;
    # aborting it makes the client see the connection die before any response.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("dropping a connection needs uvicorn's transport")
    transport.abort()
    # Wait for uvicorn to notice, so it does not try to answer 500 on a closed socket.
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(
    clock: Callable[[], float] = time.time,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    connect_webhook_url: str | None = None,
    connect_webhook_secret: str | None = None,
) -> DevStripeApp:
    """A fresh server with empty state; events go to `webhook_url` when both are given, and
    events on connected accounts to `connect_webhook_url` under its own secret."""
    return DevStripeApp(
        clock,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        connect_webhook_url=connect_webhook_url,
        connect_webhook_secret=connect_webhook_secret,
    )
