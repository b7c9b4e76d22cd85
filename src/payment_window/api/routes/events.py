"""Live status of one window as server-sent events (the checkout page's countdown listens)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from payment_window.api import sse
from payment_window.api.auth import CurrentBearer
from payment_window.api.deps import ContainerDep, SessionId, Windows
from payment_window.api.errors import ApiError
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
        **error_responses(401, 404, 429),
    },
)
async def checkout_events(
    request: Request,
    session_id: SessionId,
    bearer: CurrentBearer,
    windows: Windows,
    container: ContainerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The window's changes as they happen in any process, for whoever may read its status.

    The stream ends when the viewer's token expires (reconnect with a fresh one); a subject
    may hold `PW_SSE_MAX_STREAMS_PER_SUBJECT` streams at once in one process (429 beyond).
    """
    actor = bearer.actor
    current = await windows.status(session_id, actor)
    seen = sse.last_event_id(last_event_id)
    if seen is not None and seen >= current.version and current.status.value in sse.FINAL:
        # Nothing will ever follow: 204 tells EventSource-style clients to stop reconnecting.
        return Response(status_code=204, headers=STREAM_HEADERS)
    slots: sse.StreamSlots = request.app.state.stream_slots
    if not slots.take(actor.subject):
        raise ApiError(
            429,
            "too_many_streams",
            "this token's subject already holds as many live streams as allowed",
            headers={"Retry-After": str(sse.RETRY_MILLISECONDS // 1000)},
        )
    heartbeat: float = getattr(request.app.state, "sse_heartbeat_seconds", sse.HEARTBEAT_SECONDS)
    return SlottedStream(
        sse.window_events(
            windows,
            container.changes,
            session_id,
            actor,
            seen,
            heartbeat,
            until=bearer.expires,
            stopping=getattr(request.app.state, "draining", None),
        ),
        release=lambda: slots.give_back(actor.subject),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )


class SlottedStream(StreamingResponse):
    """A stream that gives its slot back however it ends, even before its first byte."""

    def __init__(
        self,
        content: AsyncIterator[str],
        *,
        release: Callable[[], None],
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
