"""Stripe's webhook: the raw body and its `Stripe-Signature`, handed to the webhook use case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from payment_window.api.deps import ContainerDep
from payment_window.api.schemas import error_responses

router = APIRouter(tags=["stripe"])


@router.post(
    "/payments/stripe/webhook",
    response_model=None,
    responses={
        200: {"description": "Acknowledged: acted on, already seen, or not ours to act on."},
        **error_responses(400, 413),
    },
)
async def stripe_webhook(
    request: Request,
    container: ContainerDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> JSONResponse:
    """A Stripe-signed event (signature checked over the raw body, 300 s tolerance).

    Bodies over 1 MiB are refused with 413 while being read (api/middleware.py).
    """
    payload = await request.body()
    result = await container.webhooks.handle(payload, stripe_signature)
    return JSONResponse({"received": True, "outcome": result.outcome.value})
