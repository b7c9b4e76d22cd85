"""`reconcile` over in-memory fakes: the index rebuilt from the store, which is the truth."""

from __future__ import annotations

from datetime import timedelta

from fakes import FakeReadModel
from structlog.testing import capture_logs
from test_use_cases import ADMIN, World

from payment_window.reconcile import reconcile


async def test_reconcile_puts_back_what_the_index_lost_or_holds_stale_and_drops_the_closed() -> (
    None
):
    world = World()
    lost = await world.open(auction="auc-lost", minutes=30)
    stale = await world.open(auction="auc-stale", minutes=30)
    closed = await world.open(auction="auc-closed", minutes=30)
    kept = await world.open(auction="auc-kept", minutes=30)
    await world.index.forget(lost.id)  # a Redis key evicted
    world.index.down = True  # the extension and the termination miss the index
    with capture_logs():
        extended = await world.windows.extend(stale.id, 10, ADMIN)
        await world.windows.terminate(closed.id, ADMIN)
    world.index.down = False
    progress: list[tuple[int, int]] = []

    report = await reconcile(
        FakeReadModel(world.uow.store),
        world.index,
        page_size=2,
        progress=lambda *p: progress.append(p),
    )

    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert world.index.schedule[lost.id] == lost.expires_at
    assert world.index.schedule[stale.id] == extended.due_at
    assert closed.id not in world.index.schedule
    assert world.index.schedule[kept.id] == kept.expires_at
    assert progress and progress[-1][0] == progress[-1][1]
    world.clock.advance(timedelta(minutes=31))
    assert (await world.expiry.run_pass()).expired == 2  # lost and kept; stale was extended
