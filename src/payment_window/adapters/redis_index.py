"""The window index on Redis: a hash per window, a sorted set of deadlines, claims with leases.

Keys (Redis Cluster safe: every script touches the keys of one slot only):

- `{prefix}payment:window:{<sessionId>}`: hash; the session id is the hash tag. Short field
  names keep it small and in listpack encoding: `e` expiresAt (epoch ms), `s` status, `v` version,
  `a` auctionId, `m` makerId, `b` buyerId, `n` amount, `c` currency, `r` reason (absent when
  none), `u0`, `u1`, … the checkout URL in pieces of at most 64 bytes (absent when none): Redis
  keeps a hash in listpack only while every value is at most `hash-max-listpack-value` (64).
- `{prefix}payment:windows:{due}`: sorted set, member = session id, score = due epoch ms.
- `{prefix}payment:windows:{due}:inflight`: sorted set of claimed ids, score = lease end ms.
- `{prefix}payment:windows:wake`: pub/sub channel nudging sleeping workers.

The prefix must not contain `{`, or it would become the hash tag.

Memory (Redis 7.0, MEMORY USAGE of the hash plus the zset's share, no prefix): about 334 bytes
per open window with service-shaped ids and no checkout URL, 430 with the local Stripe server's
95-character URL, 720 with a real Stripe URL (~300 characters). The zset entry alone is ~118
bytes and the hash's key, object and dict entry ~88; the rest is the listpack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio
from redis.asyncio.client import PubSub

from payment_window.adapters.redis_reads import BatchedHashReads
from payment_window.domain.ports import Claim, WindowSnapshot
from payment_window.domain.session import PaymentSession, Status, close_reason

KEEP_AFTER_CLOSE = timedelta(days=7)
URL_PIECE = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# Writes the hash unless it holds a newer version; DEL first so absent fields do not linger.
# KEYS[1] window hash; ARGV[1] version, ARGV[2] expire-at ms, ARGV[3..] field/value pairs.
_PUT = """
local stored = redis.call('HGET', KEYS[1], 'v')
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] due, KEYS[2] in-flight; ARGV[1] limit, ARGV[2] lease ms. Returns id, due-ms pairs.
# Lapsed claims go back with NX: a window re-put while claimed keeps its new deadline.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(lapsed) do
  redis.call('ZADD', KEYS[1], 'NX', now, id)
end
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[1])
local lease_end = now + tonumber(ARGV[2])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[2], lease_end, due[i])
  redis.call('ZREM', KEYS[1], due[i])
end
return due
"""

# KEYS[1] in-flight; ARGV[1] lease ms, ARGV[2..] session ids. Only a lease still running is
# extended: a lapsed one may already be another worker's claim, and a given-back one is gone.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_end = now + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], 'XX', lease_end, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS[1] due, KEYS[2] in-flight; ARGV[1] due ms, ARGV[2] session id.
_RETRY_AT = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def window_key(prefix: str, session_id: str) -> str:
    return f"{prefix}payment:window:{{{session_id}}}"


def due_key(prefix: str) -> str:
    return f"{prefix}payment:windows:{{due}}"


def inflight_key(prefix: str) -> str:
    return f"{prefix}payment:windows:{{due}}:inflight"


def wake_channel(prefix: str) -> str:
    return f"{prefix}payment:windows:wake"


def to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def from_ms(ms: float) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def window_fields(session: PaymentSession) -> dict[str, str | int]:
    """The hash of one window, without the version (the put script writes that)."""
    values: dict[str, str | int] = {
        "e": to_ms(session.expires_at),
        "s": session.status.value,
        "a": session.auction_id,
        "m": session.maker_id,
        "b": session.buyer_id,
        "n": session.amount,
        "c": session.currency,
    }
    if session.reason is not None:
        values["r"] = session.reason
    url = session.checkout_url or ""
    for number, start in enumerate(range(0, len(url), URL_PIECE)):
        values[f"u{number}"] = url[start : start + URL_PIECE]
    return values


def _put_args(session: PaymentSession, now: datetime) -> list[str | int]:
    """The put script's ARGV: version, key expiry (ms), then the hash's field/value pairs."""
    closes = max(session.expires_at, now) if session.is_open else now
    keep_until = closes + KEEP_AFTER_CLOSE  # then status reads fall back to the store
    args: list[str | int] = [session.version, to_ms(keep_until)]
    for field, value in window_fields(session).items():
        args += [field, value]
    return args


def snapshot_from_fields(session_id: str, raw: Mapping[Any, Any]) -> WindowSnapshot:
    values = {_text(field): _text(value) for field, value in raw.items()}
    pieces = sorted((int(f[1:]), v) for f, v in values.items() if f.startswith("u"))
    return WindowSnapshot(
        session_id=session_id,
        auction_id=values["a"],
        maker_id=values["m"],
        buyer_id=values["b"],
        amount=int(values["n"]),
        currency=values["c"],
        status=Status(values["s"]),
        expires_at=from_ms(int(values["e"])),
        version=int(values["v"]),
        reason=close_reason(values.get("r")),
        checkout_url="".join(piece for _, piece in pieces) or None,
    )


class RedisWindowIndex:
    """`WindowIndex` on Redis; the client may or may not decode responses."""

    def __init__(
        self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster, prefix: str = ""
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the Redis key prefix may not contain braces")
        self._client = client
        self._prefix = prefix
        self._due = due_key(prefix)
        self._inflight = inflight_key(prefix)
        self._channel = wake_channel(prefix)
        self._put = client.register_script(_PUT)
        self._claim = client.register_script(_CLAIM)
        self._retry_at = client.register_script(_RETRY_AT)
        self._renew = client.register_script(_RENEW)
        self._pubsub: PubSub | None = None
        # The status read's own connections (a plain client only; a cluster routes by slot).
        self._reads = (
            BatchedHashReads(client.connection_pool)
            if isinstance(client, redis.asyncio.Redis)
            else None
        )

    async def now(self) -> datetime:
        seconds, micros = await self._client.time()
        return _EPOCH + timedelta(seconds=int(seconds), microseconds=int(micros))

    async def put(self, session: PaymentSession) -> None:
        args = _put_args(session, datetime.now(UTC))
        accepted = await self._put(keys=[window_key(self._prefix, session.id)], args=args)
        if not accepted:
            return  # a newer version is already recorded, and scheduled by its own put
        # The sets live in another slot, so this cannot join the script above. Two concurrent
        # puts may still land here out of order; the worker re-reads the store on every claim.
        if session.is_scheduled:
            await self._client.zadd(self._due, {session.id: to_ms(session.due_at)})
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrem(self._due, session.id)
                pipe.zrem(self._inflight, session.id)
                await pipe.execute()

    @property
    def redis_client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        """The connection, shared with what else lives in Redis (the Stripe budget)."""
        return self._client

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        """`put` then `release` for each window of a closed batch, in two round trips, not
        three or four per window: the expiry path's index cost was dominated by round trips."""
        if not sessions:
            return
        now = datetime.now(UTC)
        async with self._client.pipeline(transaction=False) as pipe:
            for session in sessions:
                # EVAL, not EVALSHA: a pipeline (on a cluster, one per node) cannot recover
                # from NOSCRIPT, and the server caches the script body anyway.
                pipe.eval(_PUT, 1, window_key(self._prefix, session.id), *_put_args(session, now))
            accepted = await pipe.execute()
        async with self._client.pipeline(transaction=False) as pipe:
            for session, ok in zip(sessions, accepted, strict=True):
                if ok and session.is_scheduled:
                    pipe.zadd(self._due, {session.id: to_ms(session.due_at)})
                elif ok:
                    pipe.zrem(self._due, session.id)
            pipe.zrem(self._inflight, *(session.id for session in sessions))
            await pipe.execute()

    async def snapshot(self, session_id: str) -> WindowSnapshot | None:
        key = window_key(self._prefix, session_id)
        raw = await (self._client.hgetall(key) if self._reads is None else self._reads.hgetall(key))
        return snapshot_from_fields(session_id, raw) if raw else None

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        if limit < 1:
            return []  # LIMIT 0 -1 would mean "all"
        lease_ms = max(1, round(lease_seconds * 1000))
        flat = await self._claim(keys=[self._due, self._inflight], args=[limit, lease_ms])
        return [
            Claim(session_id=_text(flat[i]), due_at=from_ms(float(flat[i + 1])))
            for i in range(0, len(flat), 2)
        ]

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        if not claims:
            return 0
        lease_ms = max(1, round(lease_seconds * 1000))
        ids = [claim.session_id for claim in claims]
        return int(await self._renew(keys=[self._inflight], args=[lease_ms, *ids]))

    async def release(self, session_id: str) -> None:
        await self._client.zrem(self._inflight, session_id)

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        await self._retry_at(keys=[self._due, self._inflight], args=[to_ms(due_at), session_id])

    async def next_due(self) -> datetime | None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zrange(self._due, 0, 0, withscores=True)
            pipe.zrange(self._inflight, 0, 0, withscores=True)
            firsts = await pipe.execute()
        scores = [float(pairs[0][1]) for pairs in firsts if pairs]
        return from_ms(min(scores)) if scores else None

    async def pending_count(self) -> int:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zcard(self._due)
            pipe.zcard(self._inflight)
            counts = await pipe.execute()
        return sum(int(count) for count in counts)

    async def scheduled_ids(self) -> set[str]:
        ids: set[str] = set()
        for key in (self._due, self._inflight):
            async for member, _score in self._client.zscan_iter(key, count=1000):
                ids.add(_text(member))
        return ids

    async def forget(self, session_id: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(window_key(self._prefix, session_id))
            pipe.zrem(self._due, session_id)
            pipe.zrem(self._inflight, session_id)
            await pipe.execute()

    async def wake(self) -> None:
        await self._client.publish(self._channel, "1")

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        # One subscription for the index's life: wakes published while the worker was busy
        # wait in it and end the next sleep at once.
        if self._pubsub is None:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
            except BaseException:
                # Not kept half-made: the next wait subscribes again (Redis may be back).
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            self._pubsub = pubsub
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None:
                while await self._pubsub.get_message(ignore_subscribe_messages=True):
                    pass  # several wakes in a row need only one look at the schedule
                return

    async def needs_rebuild(self) -> bool:
        """True when the index lost its contents (flushed, failed over empty) since the last
        rebuild: the marker a rebuild leaves is gone with everything else."""
        return not await self._client.exists(f"{self._due}:built")

    async def mark_rebuilt(self) -> None:
        await self._client.set(f"{self._due}:built", "1")

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        await self._client.aclose()
