"""Rebuild the window index from the store, which is the truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from payment_window.concurrency import each
from payment_window.domain.ports import ReadModel, WindowIndex
from payment_window.domain.session import PaymentSession

Progress = Callable[[int, int], None]
_CONCURRENCY = 32
_PRECISION = timedelta(milliseconds=1)  # the Redis index keeps deadlines in ms


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconcile pass did to the index."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def reconcile(
    store: ReadModel,
    index: WindowIndex,
    *,
    page_size: int = 1000,
    progress: Progress | None = None,
) -> ReconcileReport:
    """Put every open session the index lacks or holds stale; drop what is closed or gone.

    Reads the store in pages (keyset on id). `progress(done, total)` counts the store's open
    sessions plus the ids the index had scheduled when the pass began; an open session that is
    also scheduled counts twice.
    """
    counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0}
    scheduled = await index.scheduled_ids()
    total = await store.unsettled_count() + len(scheduled)
    done = 0

    async def check(session: PaymentSession) -> None:
        snapshot = await index.snapshot(session.id)
        if snapshot is None or session.id not in scheduled:
            outcome = "added"
        elif (
            snapshot.version != session.version
            or snapshot.status is not session.status
            or abs(snapshot.expires_at - session.expires_at) >= _PRECISION
        ):
            outcome = "updated"
        else:
            outcome = "unchanged"
        if outcome != "unchanged":
            await index.put(session)
        counts[outcome] += 1

    last_id = ""
    while page := await store.unsettled_after(last_id, page_size):
        await each(page, check, at_once=_CONCURRENCY)
        last_id = page[-1].id
        done += len(page)
        for session in page:
            if session.id in scheduled:
                scheduled.discard(session.id)
                done += 1
        _report(progress, done, total)

    async def settle(item: tuple[str, PaymentSession | None]) -> None:
        session_id, session = item
        if session is None:
            await index.forget(session_id)
        elif session.is_scheduled:
            return  # opened after the pass began; its own put scheduled it
        else:
            await index.put(session)  # off the schedule, its final state still readable
        counts["removed"] += 1

    leftover = sorted(scheduled)
    for start in range(0, len(leftover), page_size):
        ids = leftover[start : start + page_size]
        stored = {session.id: session for session in await store.sessions(ids)}
        await each(
            [(session_id, stored.get(session_id)) for session_id in ids],
            settle,
            at_once=_CONCURRENCY,
        )
        done += len(ids)
        _report(progress, done, total)
    await index.mark_rebuilt()
    return ReconcileReport(**counts)


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, max(done, total))
