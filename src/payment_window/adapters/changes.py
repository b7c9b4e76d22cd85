"""Live change feeds for server-sent events: in-process, or across processes over Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio
import structlog
from redis.asyncio.client import PubSub

from payment_window.adapters.redis_options import OUTAGE_ERRORS, client_options
from payment_window.domain.ports import WindowChange

log = structlog.get_logger(__name__)

SUBSCRIBE_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 1.0
PUBLISH_PAUSE_SECONDS = 2.0


class InProcessChangeFeed:
    """Fans changes out to subscribers of this process (the embedded default)."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[WindowChange]]] = defaultdict(set)

    async def publish(self, change: WindowChange) -> None:
        for queue in list(self._subscribers.get(change.session_id, ())):
            with contextlib.suppress(asyncio.QueueFull):
                # A viewer this far behind resynchronises from the status on its next event.
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

    async def close(self) -> None:
        """Nothing to release."""


def changes_channel(prefix: str, session_id: str) -> str:
    """The window's pub/sub channel. Plain PUBLISH reaches every node of a cluster, so the hash
    tag only keeps the name in the family of the window's keys."""
    return f"{prefix}payment:window:{{{session_id}}}:changes"


class RedisChangeFeed:
    """Changes published on a per-window Redis channel, heard by every process.

    One pub/sub connection per process carries every window its viewers watch: a channel is
    subscribed while at least one local viewer watches it, and messages are fanned out locally.
    Redis pub/sub is fire-and-forget; viewers cover a gap (a reconnect) by re-reading the status.
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._local = InProcessChangeFeed()
        self._watchers: Counter[str] = Counter()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._quiet_until = float("-inf")

    @classmethod
    def from_url(cls, url: str, prefix: str = "") -> RedisChangeFeed:
        """Its own connections: a viewer's subscription must never wait for the index's pool.

        On a Redis Cluster (`redis+cluster://node`) the named node will do: classic PUBLISH is
        broadcast to every node, so subscribers anywhere hear it.
        """
        url = url.replace("+cluster://", "://", 1)
        client = redis.asyncio.Redis.from_url(url, decode_responses=True, **client_options())
        return cls(client, prefix)

    async def publish(self, change: WindowChange) -> None:
        """Never fails the change it announces (already committed): with Redis unreachable, only
        this process's viewers hear it; the others re-read the status when they reconnect."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._quiet_until:
            channel = changes_channel(self._prefix, change.session_id)
            try:
                await self._client.publish(channel, encode(change))
                return
            except OUTAGE_ERRORS as error:
                # Not one timeout per window of a batch: skip Redis for a while.
                self._quiet_until = loop.time() + PUBLISH_PAUSE_SECONDS
                log.warning("change_feed_publish_failed", error=repr(error))
        await self._local.publish(change)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[asyncio.Queue[WindowChange]]:
        # Registered locally before Redis is asked, so nothing heard in between is dropped.
        async with self._local.subscribe(session_id) as queue:
            await self._watch(session_id)
            try:
                yield queue
            finally:
                await self._unwatch(session_id)

    async def _watch(self, session_id: str) -> None:
        channel = changes_channel(self._prefix, session_id)
        self._watchers[channel] += 1
        if self._watchers[channel] == 1:
            self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
            await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="redis-change-feed")
        confirmed = self._confirmed.get(channel)
        if confirmed is not None:
            try:
                await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("change_feed_subscribe_unconfirmed", channel=channel)

    async def _unwatch(self, session_id: str) -> None:
        channel = changes_channel(self._prefix, session_id)
        self._watchers[channel] -= 1
        if self._watchers[channel] > 0:
            return
        del self._watchers[channel]
        self._confirmed.pop(channel, None)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(channel)
            except Exception:
                log.warning("change_feed_unsubscribe_failed", channel=channel, exc_info=True)

    async def _read(self) -> None:
        """Deliver every message this process's subscriptions hear; survive Redis restarts
        (redis-py reconnects and subscribes again on the next read)."""
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=READ_TIMEOUT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("change_feed_read_failed", exc_info=True)
                await asyncio.sleep(READ_TIMEOUT_SECONDS)
                continue
            if message is not None:
                await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if kind == "subscribe":
            waiting = self._confirmed.pop(str(channel), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        elif kind == "message":
            try:
                change = decode(message["data"])
            except (ValueError, KeyError, TypeError):
                log.warning("change_feed_bad_message", channel=channel)
                return
            await self._local.publish(change)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        await self._client.aclose()


def encode(change: WindowChange) -> str:
    return json.dumps({"sessionId": change.session_id, "event": change.event, "data": change.data})


def decode(raw: str | bytes) -> WindowChange:
    body = json.loads(raw)
    return WindowChange(body["sessionId"], body["event"], body["data"])
