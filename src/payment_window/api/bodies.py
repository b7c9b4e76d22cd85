"""What the routes answer: the status body of the contract, as plain (fast) JSON."""

from __future__ import annotations

from datetime import datetime

from fastapi.responses import JSONResponse

from payment_window.domain.session import PaymentSession
from payment_window.service import WindowStatus, status_body


def status_of(session: PaymentSession, now: datetime) -> WindowStatus:
    """A stored session as its viewers see it at `now` (the service answers with sessions)."""
    return WindowStatus(
        session_id=session.id,
        auction_id=session.auction_id,
        maker_id=session.maker_id,
        buyer_id=session.buyer_id,
        amount=session.amount,
        currency=session.currency,
        status=session.status,
        expires_at=session.expires_at,
        remaining_seconds=session.remaining_seconds(now),
        server_time=now,
        version=session.version,
        reason=session.reason,
        checkout_url=session.checkout_url,
    )


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
