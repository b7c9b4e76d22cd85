"""The one wiring: what `bootstrap` builds for a process, and a test's fakes put in its place."""

from __future__ import annotations

from datetime import timedelta

from fakes import FakeIndex
from test_use_cases import World, settings

from payment_window.adapters.clock import ReferenceClock
from payment_window.bootstrap import bootstrap
from payment_window.domain.session import Status


async def test_a_clock_given_to_bootstrap_decides_when_a_window_is_due_and_stamps_its_close() -> (
    None
):
    world = World()
    session = await world.open(minutes=60)

    world.clock.advance(timedelta(minutes=59))
    early = await world.expiry.run_pass()
    world.clock.advance(timedelta(minutes=2))
    due = await world.expiry.run_pass()

    assert (early.expired, due.expired) == (0, 1)
    closed = world.store[session.id]
    assert closed.status is Status.EXPIRED
    assert closed.expired_at == world.clock.now()


async def test_a_process_decides_and_stamps_by_the_index_clock_through_the_reference_clock() -> (
    None
):
    container = await bootstrap(settings())
    try:
        assert isinstance(container.clock, ReferenceClock)
        assert container.transitions.clock is container.clock
        assert container.operations is not None
        assert container.outbox_relay() is not None
        assert container.expiry_loop(container.expiry_task()) is not None
    finally:
        await container.close()


class CountingIndex(FakeIndex):
    closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_the_container_closes_what_it_built_and_leaves_what_it_was_given() -> None:
    world = World()
    index = CountingIndex(world.clock)
    container = await bootstrap(settings(), clock=world.clock, index=index)

    await container.close()

    assert index.closed == 0
