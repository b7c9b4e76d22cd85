"""Live status of one window as server-sent events (the checkout page's countdown listens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse

from payment_window.api import sse
from payment_window.api.auth import CurrentActor
from payment_window.api.deps import ContainerDep, SessionId, Windows
from payment_window.api.schemas import error_responses

router = APIRouter(tags=["checkout"])

STREAM_HEADERS = {
    "Cache-Control": "no-store",
    # Proxies (nginx) would otherwise hold events back to fill a buffer.
    "X-Accel-Buffering": "no",
}


@router.get(
    "/payments/checkout/{sessionId}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: `status` (on connect), `extended`, `rotated`, "
            "`terminated`, `expired`, `paid`, `awaiting_payment_confirmation`; `id` is the "
            "session version, data the status body; `: ping` comments every 15 s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        204: {"description": "The window is final and the viewer has seen its last version."},
        **error_responses(401, 404),
    },
)
async def checkout_events(
    request: Request,
    session_id: SessionId,
    actor: CurrentActor,
    windows: Windows,
    container: ContainerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The window's changes as they happen in any process, for whoever may read its status."""
    current = await windows.status(session_id, actor)
    seen = sse.last_event_id(last_event_id)
    if seen is not None and seen >= current.version and current.status.value in sse.FINAL:
        # Nothing will ever follow: 204 tells EventSource-style clients to stop reconnecting.
        return Response(status_code=204, headers=STREAM_HEADERS)
    heartbeat: float = getattr(request.app.state, "sse_heartbeat_seconds", sse.HEARTBEAT_SECONDS)
    return StreamingResponse(
        sse.window_events(windows, container.changes, session_id, actor, seen, heartbeat),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )
