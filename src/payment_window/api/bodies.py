"""What the routes answer: the status body of the contract, as plain (fast) JSON."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from payment_window.domain import messages
from payment_window.domain.status import WindowStatus


def status_body(status: WindowStatus) -> dict[str, object]:
    """The status JSON of the HTTP contract (camelCase keys, ISO times with Z)."""
    return {
        "sessionId": status.session_id,
        "auctionId": status.auction_id,
        "status": status.status.value,
        "expiresAt": messages.iso(status.expires_at),
        "remainingTime": status.remaining_seconds,
        "serverTime": messages.iso(status.server_time),
        "version": status.version,
        "reason": status.reason,
        "checkoutUrl": status.checkout_url,
        "amount": status.amount,
        "currency": status.currency,
        "makerId": status.maker_id,
    }


def etag(version: int) -> str:
    return f'"{version}"'


def status_response(
    status: WindowStatus, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    # No pydantic on the way out: this is the hot read path the benchmark compares to /healthz.
    return JSONResponse(
        status_body(status),
        status_code=status_code,
        headers={"ETag": etag(status.version), "Cache-Control": "no-store", **(headers or {})},
    )
