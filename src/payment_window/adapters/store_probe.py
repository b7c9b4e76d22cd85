"""The store's readiness probe: one `SELECT 1`, so the health route runs no SQL of its own."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


class SqlStoreProbe:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ping(self) -> None:
        """Returns once the store answered; raises what the driver raised otherwise."""
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
