"""Request dependencies: the container's parts, and path parameters bound into the log context.

All are `async def`: FastAPI runs plain `def` dependencies in a thread, which costs time on the
hot path and would lose the structlog context they bind.
"""

from __future__ import annotations

import re
from typing import Annotated

import structlog
from fastapi import Depends, Path, Request

from payment_window.api.schemas import ID_PATTERN
from payment_window.bootstrap import Container
from payment_window.domain.errors import SessionNotFound
from payment_window.domain.ports import Clock
from payment_window.service import PaymentWindows

_SESSION_ID = re.compile(ID_PATTERN)


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_windows(request: Request) -> PaymentWindows:
    windows: PaymentWindows = request.app.state.container.windows
    return windows


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.container.clock
    return clock


def checked_session_id(session_id: str) -> str:
    """The path's session id; one that cannot exist is simply not found (no store round trip)."""
    if len(session_id) > 128 or not _SESSION_ID.fullmatch(session_id):
        raise SessionNotFound(session_id)
    structlog.contextvars.bind_contextvars(session_id=session_id)
    return session_id


async def bound_session_id(session_id: Annotated[str, Path(alias="sessionId")]) -> str:
    return checked_session_id(session_id)


ContainerDep = Annotated[Container, Depends(get_container)]
Windows = Annotated[PaymentWindows, Depends(get_windows)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SessionId = Annotated[str, Depends(bound_session_id)]
MakerId = Annotated[str, Path(alias="makerId", min_length=1, max_length=128, pattern=ID_PATTERN)]
