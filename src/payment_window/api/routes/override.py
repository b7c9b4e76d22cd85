"""Admin (and, within policy, maker) overrides: extend or terminate a window."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import Response

from payment_window.api.auth import CurrentActor
from payment_window.api.bodies import status_response
from payment_window.api.deps import ClockDep, SessionId, Windows
from payment_window.api.errors import ApiError
from payment_window.api.idempotency import IdempotencyKey, idempotent
from payment_window.api.schemas import ExtendIn, OverrideIn, error_responses, status_answer_doc
from payment_window.domain.status import WindowStatus

router = APIRouter(tags=["override"])

_VERSION = re.compile(r'(?:"(\d{1,9})"|(\d{1,9}))')


def parse_if_match(value: str | None) -> int | None:
    """`If-Match: 3` or `If-Match: "3"` (the ETag we send); `*` or nothing means any version."""
    if value is None or value.strip() == "*":
        return None
    found = _VERSION.fullmatch(value.strip())
    if found is None:
        raise ApiError(400, "invalid_if_match", 'If-Match must be a session version, e.g. 3 or "3"')
    return int(found.group(1) or found.group(2))


@router.post(
    "/payments/window/{sessionId}/override",
    response_model=None,
    responses={
        200: status_answer_doc(),
        **error_responses(400, 401, 403, 404, 409, 412, 413, 422, 503, retry_409=True),
    },
)
async def override_window(
    request: Request,
    session_id: SessionId,
    body: Annotated[OverrideIn, Body()],
    actor: CurrentActor,
    windows: Windows,
    clock: ClockDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Extend (`minutes` required, within policy) or terminate an open window."""
    version = parse_if_match(if_match)

    async def overridden() -> Response:
        if isinstance(body, ExtendIn):
            session = await windows.extend(
                session_id, body.minutes, actor, reason=body.reason, if_match=version
            )
        else:
            session = await windows.terminate(
                session_id, actor, reason=body.reason, if_match=version
            )
        return status_response(WindowStatus.of(session, clock.now()))

    return await idempotent(request, actor, idempotency_key, body, overridden)
