"""Per-request context: a correlation id in, out and in every log line; the last-resort 500."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_window.api.errors import internal_error_response

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
        request_id = _incoming_id(scope) or uuid.uuid4().hex
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
        except Exception:
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if started:
                raise
            await internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            structlog.contextvars.unbind_contextvars("session_id")
