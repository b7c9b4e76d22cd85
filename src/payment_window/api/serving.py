"""`payment-window serve`'s uvicorn: on SIGTERM (an ECS or Kubernetes stop) live event streams
are ended first, each with a last `reconnect` event, so the server drains within seconds
instead of waiting on streams that would last until their tokens expire; then it exits 0."""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI

log = structlog.get_logger(__name__)

# Well inside ECS's default 30 s stop timeout (and Kubernetes' 30 s grace period): requests in
# flight get this long once streams have ended; then uvicorn cancels what is left.
GRACEFUL_SHUTDOWN_SECONDS = 10


def draining(app: FastAPI) -> asyncio.Event:
    """Set once the server is stopping: every live stream ends with a `reconnect` event."""
    event: asyncio.Event | None = getattr(app.state, "draining", None)
    if event is None:
        event = asyncio.Event()
        app.state.draining = event
    return event


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None and not self.should_exit:
            log.info("draining", signal=sig)
            self._loop.call_soon_threadsafe(draining(self._app).set)
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again after its shutdown, which would end the process
        # with 128+15; a stop that went as planned exits 0.
        self._captured_signals.clear()


def serve(app: FastAPI, host: str, port: int) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    DrainingServer(config, app).run()
