"""Pure ASGI middleware: the request context and last-resort 500, body limits, common headers."""

from __future__ import annotations

import os
import re

import structlog
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_window.adapters.store import store_unavailable
from payment_window.api.errors import (
    error_response,
    internal_error_response,
    store_unavailable_response,
)

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is echoed into logs and headers, so only a tame one is taken as it is.
_ACCEPTABLE_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _ACCEPTABLE_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it sits on the benchmarked path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 32 hex digits as uuid4().hex, without building a UUID object on every request.
        request_id = _incoming_id(scope) or os.urandom(16).hex()
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(correlation_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if store_unavailable(error):
                # Down, failing over or frozen: the caller retries; not a bug, no stack trace.
                log.warning(
                    "store_unavailable",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    error=repr(error),
                )
                if started:
                    raise
                await store_unavailable_response()(scope, receive, send_with_id)
                return
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if started:
                raise
            await internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            structlog.contextvars.unbind_contextvars("session_id")


JSON_BODY_LIMIT = 64 * 1024
# Without it the server would go on reading (and dropping) the rest of the body to keep the
# connection alive for the next request: closing is what stops a 100 MB upload.
CLOSE_CONNECTION = {"Connection": "close"}
# Stripe documents no maximum event size. Its events about Checkout Sessions are a few KiB
# (metadata is capped at 50 keys of 500 characters); 1 MiB leaves ample room for any Stripe
# object while still refusing a body meant to exhaust memory.
WEBHOOK_BODY_LIMIT = 1024 * 1024
WEBHOOK_PATH = "/payments/stripe/webhook"


class PayloadTooLarge(StarletteHTTPException):
    """Raised from `receive` once a body passes its limit; the error handler makes it a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes", headers=CLOSE_CONNECTION
        )


def body_limit(path: str) -> int:
    return WEBHOOK_BODY_LIMIT if path == WEBHOOK_PATH else JSON_BODY_LIMIT


class BodyLimitMiddleware:
    """413 `payload_too_large` once a body passes its limit, before anything else reads it.

    A declared `Content-Length` over the limit is refused without reading a byte; a streamed
    body is counted chunk by chunk and refused at the first chunk past the limit, so a client
    sending 100 MB costs this process 64 KiB.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            # Servers check the header's form; a length of 20 digits is over any limit anyway.
            return int(value[:20]) if value.isdigit() else None
    return None


def _too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "payload_too_large",
        f"the request body is larger than {limit} bytes",
        headers=CLOSE_CONNECTION,
    )


NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    """`X-Content-Type-Options: nosniff` on every answer; `Cache-Control: no-store` on every
    error and every JSON answer to a request that carried credentials (unless the route chose
    its own caching), so no shared cache keeps someone's window or a refusal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authenticated = any(name == b"authorization" for name, _ in scope.get("headers", ()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                if b"x-content-type-options" not in names:
                    headers.append(NOSNIFF)
                is_json = content_type.startswith(b"application/json")
                if b"cache-control" not in names and (
                    message["status"] >= 400 or (authenticated and is_json)
                ):
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
