"""Server-sent events of one window: its status changes, with the version as the event id.

A viewer resumes with `Last-Event-ID`: when it is behind, the current status is sent first as
the event that leads to it, so nothing is missed however many changes happened meanwhile. Redis
pub/sub may drop a message across a reconnect, so each heartbeat also looks at the version.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from payment_window.api.bodies import status_body
from payment_window.domain.access import Actor
from payment_window.domain.ports import ChangeSubscriptions
from payment_window.domain.session import Status, closed_event
from payment_window.service import PaymentWindows

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 3000
# After a `reconnect` (the server is stopping): come back soon, to another process.
RECONNECT_MILLISECONDS = 500
FINAL = frozenset({Status.PAID.value, Status.EXPIRED.value})


def frame(event: str, data: Mapping[str, Any], event_id: int) -> str:
    """One event in the text/event-stream format (JSON has no raw newlines: one data line)."""
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_for(body: Mapping[str, Any]) -> str:
    """The event that leads to this status, for a viewer that missed it."""
    status = body.get("status")
    if status == Status.OPEN.value:
        return "extended"
    if status == Status.EXPIRED.value:
        return closed_event(body.get("reason"))
    return str(status)


def last_event_id(header: str | None) -> int | None:
    """The version the viewer last saw; anything but a small whole number means none."""
    if header is None or not header.strip().isdigit() or len(header.strip()) > 9:
        return None
    return int(header.strip())


def is_final(body: Mapping[str, Any]) -> bool:
    return body.get("status") in FINAL


async def window_events(
    windows: PaymentWindows,
    changes: ChangeSubscriptions,
    session_id: str,
    viewer: Actor,
    seen: int | None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    *,
    until: float = math.inf,
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[str]:
    """The stream's text, until the window reaches a final status, the viewer leaves, the
    viewer's token expires at `until` (Unix time): a stream is no way to outlive one's token,
    or the server stops (`stopping`): a last `reconnect` event sends the page to another."""
    stopping = stopping or asyncio.Event()
    async with changes.subscribe(session_id) as subscription:
        # Read after subscribing: a change committed in between arrives as an event as well.
        current = status_body(await windows.status(session_id, viewer))
        sent = int(current["version"])  # type: ignore[call-overload]
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        if seen is None or seen > sent:
            yield frame("status", current, sent)
        elif seen < sent:
            yield frame(event_for(current), current, sent)
        if is_final(current):
            return
        while True:
            left = until - time.time()
            if left <= 0:
                return
            try:
                change = await _next_change(subscription, stopping, min(heartbeat_seconds, left))
            except ServerStopping:
                yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
                yield frame("reconnect", {"reason": "server_stopping"}, sent)
                return
            except TimeoutError:
                if time.time() >= until:
                    return
                yield ": ping\n\n"
                body = await _status_quietly(windows, session_id, viewer)
                if body is not None and int(body["version"]) > sent:  # type: ignore[call-overload]
                    sent = int(body["version"])  # type: ignore[call-overload]
                    yield frame(event_for(body), body, sent)
                    if is_final(body):
                        return
                continue
            if time.time() >= until:
                return
            version = int(change.data.get("version", 0))
            # An extension that also replaced the Stripe session sends both at one version.
            if version > sent or (version == sent and change.event == "rotated"):
                sent = version
                yield frame(change.event, change.data, version)
                if is_final(change.data):
                    return


class ServerStopping(Exception):
    """The server is draining: the stream ends so the page reconnects to another process."""


async def _next_change(subscription: Any, stopping: asyncio.Event, timeout: float) -> Any:  # noqa: ASYNC109
    """The next change; TimeoutError after `timeout`; ServerStopping once `stopping` is set."""
    if stopping.is_set():
        raise ServerStopping
    getting = asyncio.ensure_future(subscription.get())
    watching = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait(
            {getting, watching}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (getting, watching):
            if not task.done():
                task.cancel()
    if getting in done:
        return getting.result()
    if watching in done:
        raise ServerStopping
    raise TimeoutError


async def _status_quietly(
    windows: PaymentWindows, session_id: str, viewer: Actor
) -> dict[str, object] | None:
    try:
        return status_body(await windows.status(session_id, viewer))
    except Exception:
        log.warning("sse_status_check_failed", session_id=session_id, exc_info=True)
        return None


class StreamSlots:
    """At most `per_subject` live streams per token subject, so one token cannot hold open
    connections without end. Counted in this process only: behind a load balancer of N
    processes a subject may hold up to N times `per_subject` streams."""

    def __init__(self, per_subject: int) -> None:
        self._per_subject = per_subject
        self._open: Counter[str] = Counter()

    def take(self, subject: str) -> bool:
        """Take a slot for `subject`; False when it already holds them all."""
        if self._open[subject] >= self._per_subject:
            return False
        self._open[subject] += 1
        return True

    def give_back(self, subject: str) -> None:
        self._open[subject] -= 1
        if self._open[subject] <= 0:
            del self._open[subject]
