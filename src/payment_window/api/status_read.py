"""The status read, answered before FastAPI's router: the request the service answers most.

Every open checkout page polls it. FastAPI's router matches the path against each included
router and then solves the route's (empty) dependencies; the profile in docs/performance.md
shows that costing more CPU than the Redis read itself. This layer answers exactly
`GET /payments/checkout/{sessionId}/status` with `status_answer`, the same function the route in
`routes/checkout.py` runs (that route keeps the OpenAPI description), and passes everything else
on. It sits inside the other middleware, so the request id, headers and limits still apply.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from payment_window.api.auth import TokenVerifier, bearer_token
from payment_window.api.bodies import status_response
from payment_window.api.deps import checked_session_id
from payment_window.api.errors import (
    ApiError,
    api_error_response,
    domain_error_response,
)
from payment_window.domain.errors import DomainError
from payment_window.service import PaymentWindows

STATUS_PATH = re.compile(r"/payments/checkout/([^/]+)/status")


async def status_answer(app: FastAPI, authorization: str, session_id: str) -> Response:
    """The window's status for its buyer, its maker or an admin; anyone else gets 404."""
    try:
        verifier: TokenVerifier = app.state.verifier
        actor = await verifier.verify(bearer_token(authorization))
        windows: PaymentWindows = app.state.container.windows
        return status_response(await windows.status(checked_session_id(session_id), actor))
    except DomainError as refused:
        return domain_error_response(refused)
    except ApiError as refused:
        return api_error_response(refused)


class StatusReadShortcut:
    """Pure ASGI: `GET /payments/checkout/{sessionId}/status` without routing; the rest on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = STATUS_PATH.fullmatch(scope["path"])
            if match is not None:
                authorization = Headers(scope=scope).get("authorization", "")
                response = await status_answer(scope["app"], authorization, match.group(1))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
