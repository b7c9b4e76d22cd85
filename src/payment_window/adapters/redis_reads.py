"""The status read's HGETALLs, sent together: every read asked for in one turn of the event loop
goes out in one write on one connection, and their answers come back in order.

Per command, redis-py's client (pool checkout, retry wrapper, timeouts, hooks) and even a bare
connection's send and read cost more CPU than the Redis round trip itself; under load, status
reads arrive many at a time, so sending them as one pipeline shares that cost among them
(ioredis calls this auto-pipelining). A lone read goes out on its own with no added wait: the
batch is sent on the loop's next turn, not after a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

CONNECTIONS_KEPT = 16


class BatchedHashReads:
    """HGETALL for a plain client's pool; connections kept for this read path alone."""

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._waiting: list[tuple[str, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def hgetall(self, key: str) -> Mapping[Any, Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((key, answer))
        if len(self._waiting) == 1:
            loop.call_soon(self._send_waiting)
        raw = await answer
        if isinstance(raw, list):  # RESP2: field, value, field, value, ...
            return dict(zip(raw[::2], raw[1::2], strict=True))
        return raw  # type: ignore[no-any-return]

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._round_trip(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _round_trip(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        """One write, then one answer per read. A kept connection that has gone stale (Redis
        restarted) is replaced once; any other failure fails the reads of this batch."""
        for attempt in (1, 2):
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                commands = [("HGETALL", key) for key, _ in batch]
                await connection.send_packed_command(connection.pack_commands(commands))
                answers = [await connection.read_response() for _ in batch]
            except BaseException as error:
                await connection.disconnect()
                stale = isinstance(error, (RedisConnectionError, OSError))
                if reused and attempt == 1 and stale:
                    continue
                for _, answer in batch:
                    if answer.done():
                        continue
                    if isinstance(error, asyncio.CancelledError):
                        answer.cancel()
                    else:
                        answer.set_exception(error)
                if not isinstance(error, Exception):
                    raise
                return
            if len(self._idle) < CONNECTIONS_KEPT:
                self._idle.append(connection)
            else:
                await connection.disconnect()
            for (_, answer), raw in zip(batch, answers, strict=True):
                if not answer.done():  # its request may have gone (client disconnected)
                    answer.set_result(raw)
            return

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        while self._idle:
            await self._idle.pop().disconnect()
