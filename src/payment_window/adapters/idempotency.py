"""The `idempotency_keys` table: each key's request fingerprint and, once done, its answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_window.adapters.tables import idempotency_keys


@dataclass(frozen=True, slots=True)
class SavedAnswer:
    """A completed first answer, replayed byte for byte."""

    status_code: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class HeldKey:
    """A key another request claimed: its fingerprint, and its answer once there is one."""

    fingerprint: str
    answer: SavedAnswer | None


# Reclaiming a stale row can lose a race to another request doing the same; the loser looks
# again, and a third look always finds the winner's row.
_CLAIM_ATTEMPTS = 3


class SqlIdempotencyKeys:
    """Claims, answers and forgets Idempotency-Keys, each step its own short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(
        self,
        subject: str,
        key: str,
        fingerprint: str,
        now: datetime,
        *,
        forget_before: datetime,
        abandon_before: datetime,
    ) -> HeldKey | None:
        """Claim `key` for a request: None when claimed, else who holds it.

        A row created before `forget_before` is forgotten (its 24 hours are over); one still
        unanswered since before `abandon_before` belonged to a process that died mid-request.
        Either is taken over.
        """
        async with self._engine.begin() as connection:
            for _ in range(_CLAIM_ATTEMPTS):
                if await self._insert(connection, subject, key, fingerprint, now):
                    return None
                row = (
                    await connection.execute(
                        select(idempotency_keys).where(
                            idempotency_keys.c.subject == subject, idempotency_keys.c.key == key
                        )
                    )
                ).first()
                if row is None:
                    continue
                stale = row.created_at < forget_before or (
                    row.status_code is None and row.created_at < abandon_before
                )
                if not stale:
                    answer = None
                    if row.status_code is not None:
                        answer = SavedAnswer(
                            row.status_code, bytes(row.response_body), dict(row.response_headers)
                        )
                    return HeldKey(row.fingerprint, answer)
                taken = await connection.execute(
                    update(idempotency_keys)
                    .where(
                        idempotency_keys.c.subject == subject,
                        idempotency_keys.c.key == key,
                        idempotency_keys.c.created_at == row.created_at,
                    )
                    .values(
                        fingerprint=fingerprint,
                        status_code=None,
                        response_body=None,
                        response_headers=None,
                        created_at=now,
                    )
                )
                if taken.rowcount == 1:
                    return None
        raise RuntimeError(f"idempotency key {key!r} could not be claimed or read")

    async def answer(self, subject: str, key: str, answer: SavedAnswer) -> None:
        """Keep the first answer for replays."""
        async with self._engine.begin() as connection:
            await connection.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.subject == subject, idempotency_keys.c.key == key)
                .values(
                    status_code=answer.status_code,
                    response_body=answer.body,
                    response_headers=answer.headers,
                )
            )

    async def release(self, subject: str, key: str, claimed_at: datetime) -> None:
        """Forget the unanswered claim made at `claimed_at`, so the client may retry with the
        same key (a later claim of the same key, a retry's, is not touched)."""
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.subject == subject,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.status_code.is_(None),
                    idempotency_keys.c.created_at == claimed_at,
                )
            )

    async def purge(self, before: datetime) -> int:
        """Delete keys created before `before`; how many."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < before)
            )
        return int(result.rowcount)

    @staticmethod
    async def _insert(
        connection: AsyncConnection, subject: str, key: str, fingerprint: str, now: datetime
    ) -> bool:
        dialect: Any = postgresql if connection.dialect.name == "postgresql" else sqlite
        result = await connection.execute(
            dialect.insert(idempotency_keys)
            .values(subject=subject, key=key, fingerprint=fingerprint, created_at=now)
            .on_conflict_do_nothing()
        )
        return bool(result.rowcount == 1)
