"""The outbox relay loop over an in-memory outbox store: delivers, backs off, loses nothing."""

from __future__ import annotations

from datetime import timedelta

from fakes import FakeClock, FakeMetrics, FakeOutboxStore, FakeSink

from payment_window.domain.events import Destination, OutboxEnvelope
from payment_window.domain.ports import OutboxStore, Sink
from payment_window.outbox import OutboxRelay, status


def _relay(clock: FakeClock, sink: FakeSink) -> tuple[OutboxRelay, FakeOutboxStore]:
    fake = FakeOutboxStore()
    store: OutboxStore = fake
    sinks: dict[Destination, Sink] = {Destination.MAKER: sink}
    return OutboxRelay(store, sinks, FakeMetrics(), clock), fake


def _message(
    clock: FakeClock, n: int, destination: Destination = Destination.MAKER
) -> OutboxEnvelope:
    return OutboxEnvelope(
        id=f"evt-{n}",
        destination=destination,
        event_type="payment_window.expired",
        payload={"n": n},
        session_id="pw_1",
        created_at=clock.now(),
    )


async def test_due_messages_are_delivered_once() -> None:
    clock, sink = FakeClock(), FakeSink()
    relay, store = _relay(clock, sink)
    for n in range(3):
        store.add(_message(clock, n))

    first, second = await relay.run_once(), await relay.run_once()

    assert (first.delivered, second.claimed) == (3, 0)
    assert [m.id for m in sink.delivered] == ["evt-0", "evt-1", "evt-2"]


async def test_a_failed_delivery_backs_off_and_is_retried_until_it_goes() -> None:
    clock, sink = FakeClock(), FakeSink()
    relay, store = _relay(clock, sink)
    store.add(_message(clock, 1))
    sink.down = True

    failed = await relay.run_once()
    assert (failed.failed, (await relay.run_once()).claimed) == (1, 0)  # backing off
    backlog = await status(store)
    assert backlog.undelivered == 1 and backlog.failing[0].attempts == 1

    sink.down = False
    clock.advance(timedelta(seconds=3))
    assert (await relay.run_once()).delivered == 1
    assert (await status(store)).undelivered == 0


async def test_messages_without_a_sink_wait_in_the_outbox() -> None:
    clock, sink = FakeClock(), FakeSink()
    relay, store = _relay(clock, sink)
    store.add(_message(clock, 1, Destination.ANALYTICS))

    assert (await relay.run_once()).claimed == 0
    assert (await status(store)).by_destination["analytics"] == 1
