"""Windows whose index entry may be stale because an index update failed after a commit: put
again from the store, by a short loop, until the index takes them."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from payment_window.domain.ports import Metrics, UnitOfWorkFactory, WindowIndex

log = structlog.get_logger(__name__)

REPAIR_EVERY_SECONDS = 1.0


class IndexRepairs:
    """Windows whose index entry may be stale because an update failed after a commit.

    A short loop puts them again from the store until the index takes them; until then the
    status read of this process serves them from the store.
    """

    def __init__(self, uow: UnitOfWorkFactory, index: WindowIndex, metrics: Metrics) -> None:
        self._uow = uow
        self._index = index
        self._metrics = metrics
        self._pending: set[str] = set()
        self._wake_pending = False

    def add(self, session_id: str, *, wake: bool = False) -> None:
        self._pending.add(session_id)
        self._wake_pending = self._wake_pending or wake

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    async def repair(self) -> int:
        """Put every pending window as the store has it now; how many the index took."""
        repaired = 0
        for session_id in list(self._pending):
            async with self._uow() as uow:
                session = await uow.sessions.get(session_id)
            if session is None:
                self._pending.discard(session_id)
                continue
            await self._index.put(session)
            self._pending.discard(session_id)
            repaired += 1
        if self._wake_pending:
            await self._index.wake()
            self._wake_pending = False
        if repaired:
            log.info("index_repaired", windows=repaired)
        return repaired

    async def run(self, stop: asyncio.Event) -> None:
        """Repair every second until `stop`; an index still down is tried again next time."""
        while not stop.is_set():
            if self._pending or self._wake_pending:
                try:
                    await self.repair()
                except Exception as error:
                    log.warning("index_repair_failed", error=repr(error), pending=len(self))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPAIR_EVERY_SECONDS)
