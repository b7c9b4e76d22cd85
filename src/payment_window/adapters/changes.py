"""Live change feeds for server-sent events: in-process, or across processes over Redis."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from payment_window.domain.ports import WindowChange


class InProcessChangeFeed:
    """Fans changes out to subscribers of this process (the embedded default)."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[WindowChange]]] = defaultdict(set)

    async def publish(self, change: WindowChange) -> None:
        for queue in list(self._subscribers.get(change.session_id, ())):
            queue.put_nowait(change)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[asyncio.Queue[WindowChange]]:
        queue: asyncio.Queue[WindowChange] = asyncio.Queue(maxsize=1000)
        self._subscribers[session_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[session_id].discard(queue)
            if not self._subscribers[session_id]:
                del self._subscribers[session_id]


def encode(change: WindowChange) -> str:
    return json.dumps({"sessionId": change.session_id, "event": change.event, "data": change.data})


def decode(raw: str | bytes) -> WindowChange:
    body = json.loads(raw)
    return WindowChange(body["sessionId"], body["event"], body["data"])
