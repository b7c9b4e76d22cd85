"""CORS for exactly the origins in `PW_CORS_ORIGINS`, on the paths a marketplace's page calls.

A marketplace embeds `<payment-window-timer>` in its own checkout page: the page (another
origin) loads the element's modules from `/static/`, reads the status, follows the live events
and, for makers and admins, posts overrides. Those paths, and only those, answer CORS to the
configured origins: the preflight is answered here, `Authorization` is allowed, no credentials
mode (the token is a bearer header, never a cookie) and never a wildcard.

Pure ASGI and outside the status-read shortcut, so the shortcut's answers carry the headers too.
It is not installed at all when no origin is configured, and a request without an `Origin`
header (every same-origin GET, the benchmark) costs one header scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The status read, the live events and the override endpoint; the element's own modules.
CORS_PATHS = re.compile(
    r"/payments/checkout/[^/]+/(?:status|events)"
    r"|/payments/window/[^/]+/override"
    r"|/static/[A-Za-z0-9._-]+\.js"
)
ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Last-Event-ID, Idempotency-Key"
EXPOSE_HEADERS = b"ETag, Retry-After, X-Request-Id"
MAX_AGE = b"600"


def _origin(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return bytes(value)
    return None


class CorsMiddleware:
    """Allow-listed CORS on `CORS_PATHS`; every other path and origin passes untouched."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origin.encode("ascii") for origin in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        allowed = origin in self.origins
        if not allowed and scope["path"].startswith("/static/") and scope["method"] != "OPTIONS":
            # A cache may keep a module fetched without (or with another) Origin; it must not
            # hand that copy, without the CORS header, to an allowed page.
            await self.app(scope, receive, _with_headers(send, [(b"vary", b"Origin")]))
            return
        if origin is None or not CORS_PATHS.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._preflight(allowed, origin, send)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        extra = [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]
        await self.app(scope, receive, _with_headers(send, extra))

    @staticmethod
    async def _preflight(allowed: bool, origin: bytes, send: Send) -> None:
        """204 to an allowed origin with what it may send; a refused one gets no CORS header,
        which the browser reads as no."""
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if allowed:
            headers += [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return sending
