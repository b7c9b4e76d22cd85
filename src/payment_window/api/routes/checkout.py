"""Opening a payment window, and reading its status (the hot path)."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from payment_window.api.auth import BEARER_SECURITY, CurrentActor
from payment_window.api.bodies import status_response
from payment_window.api.deps import ClockDep, Windows
from payment_window.api.idempotency import IdempotencyKey, idempotent
from payment_window.api.schemas import CheckoutIn, error_responses, status_answer_doc
from payment_window.api.status_read import status_answer
from payment_window.domain.status import WindowStatus

router = APIRouter(tags=["checkout"])


def _opened() -> dict[str, Any]:
    doc = status_answer_doc("The window is open; `Location` is its status URL.")
    doc["headers"]["Location"] = {"schema": {"type": "string"}, "required": True}
    return doc


@router.post(
    "/payments/checkout",
    status_code=201,
    response_model=None,
    responses={
        201: _opened(),
        **error_responses(400, 401, 403, 409, 413, 422, 503, retry_409=True),
    },
)
async def open_checkout(
    request: Request,
    body: CheckoutIn,
    actor: CurrentActor,
    windows: Windows,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Open a payment window and its Stripe Checkout Session (roles `service`, `admin`)."""

    async def opened() -> Response:
        session = await windows.open(body.to_request(), actor)
        structlog.contextvars.bind_contextvars(session_id=session.id)
        return status_response(
            WindowStatus.of(session, clock.now()),
            status_code=201,
            headers={"Location": f"/payments/checkout/{session.id}/status"},
        )

    return await idempotent(request, actor, idempotency_key, body, opened)


@router.get(
    "/payments/checkout/{sessionId}/status",
    response_model=None,
    responses={200: status_answer_doc(), **error_responses(401, 404)},
    openapi_extra=BEARER_SECURITY,
)
async def checkout_status(
    request: Request, session_id: Annotated[str, Path(alias="sessionId")]
) -> Response:
    """The window's status for its buyer, its maker or an admin; anyone else gets 404."""
    # Answered by `StatusReadShortcut` before routing; this route describes it in /openapi.json
    # and runs the same function should a request reach it.
    return await status_answer(request.app, request.headers.get("authorization", ""), session_id)
