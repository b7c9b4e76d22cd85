"""The operations use cases over an in-memory read model of the fake store: who may look, the
listing's keyset pages and filters, the summary's figures, buyers' records and audit trails.
Every window gets its state through the use cases and the clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_use_cases import ADMIN, BUYER, MAKER, SERVICE, World

from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import OverrideNotAllowed, SessionNotFound
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.views import WindowFilter
from payment_window.operations import InvalidCursor, Operations, parse_duration
from payment_window.service import OpenWindow

OTHER_MAKER = Actor("maker-2-user", Role.MAKER, maker_id="maker-2")


def _operations(world: World) -> Operations:
    return world.container.operations


async def _open(world: World, auction: str, minutes: int, buyer: str = "buyer-1") -> PaymentSession:
    request = OpenWindow(
        auction_id=auction,
        maker_id="maker-1",
        buyer_id=buyer,
        amount=12_500,
        currency="usd",
        window_minutes=minutes,
    )
    return await world.windows.open(request, SERVICE)


@pytest.mark.parametrize("viewer", [BUYER, MAKER, SERVICE])
async def test_only_admins_see_the_operations_view(viewer: Actor) -> None:
    operations = _operations(World())
    with pytest.raises(OverrideNotAllowed):
        await operations.windows(WindowFilter(), viewer)
    with pytest.raises(OverrideNotAllowed):
        await operations.summary(viewer)
    with pytest.raises(OverrideNotAllowed):
        await operations.buyer_record("buyer-1", viewer)


async def test_pages_hand_out_every_window_once_by_deadline() -> None:
    world = World()
    opened = [await _open(world, f"auc-{n}", minutes=30 + n) for n in range(5)]
    operations = _operations(world)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await operations.windows(WindowFilter(), ADMIN, limit=2, cursor=cursor)
        seen += [session.id for session in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [session.id for session in opened]


async def test_a_cursor_from_other_filters_or_not_ours_is_refused() -> None:
    world = World()
    for n in range(3):
        await _open(world, f"auc-{n}", minutes=30)
    operations = _operations(world)
    page = await operations.windows(WindowFilter(), ADMIN, limit=1)
    assert page.next_cursor is not None

    with pytest.raises(InvalidCursor):
        await operations.windows(
            WindowFilter(status=Status.OPEN), ADMIN, limit=1, cursor=page.next_cursor
        )
    with pytest.raises(InvalidCursor):
        await operations.windows(WindowFilter(), ADMIN, cursor="bm90LW91cnM")


async def test_the_summary_counts_what_expiry_is_behind_on_and_what_closed() -> None:
    world = World()
    stuck = await _open(world, "auc-stuck", minutes=30, buyer="buyer-late")
    soon = await _open(world, "auc-soon", minutes=90)
    terminated = await _open(world, "auc-term", minutes=120, buyer="buyer-late")
    await world.windows.terminate(terminated.id, ADMIN)
    world.clock.advance(timedelta(minutes=40))
    world.stripe.fail_next()
    assert (await world.expiry.run_pass()).retried == 1  # Stripe failing: held open, overdue
    operations = _operations(world)

    summary = await operations.summary(ADMIN, days=30)
    overdue = await operations.windows(WindowFilter(overdue=True), ADMIN)

    assert (summary.open_count, summary.due_within_hour) == (2, 1)
    assert (summary.overdue_count, summary.failing_at_stripe) == (1, 1)
    assert summary.oldest_overdue_seconds == 10 * 60
    assert summary.expired_last_24h_by_reason == {"admin_terminated": 1}
    assert summary.buyer_period_days == 30
    assert [(p.buyer_id, p.unpaid, p.opened) for p in summary.repeat_non_payers] == [
        ("buyer-late", 1, 2)
    ]
    assert [session.id for session in overdue.sessions] == [stuck.id]
    assert soon.id not in [session.id for session in overdue.sessions]


async def test_a_buyers_record_counts_windows_by_how_they_ended() -> None:
    world = World()
    paid = await _open(world, "auc-paid", minutes=30)
    first_unpaid = await _open(world, "auc-1", minutes=30)
    world.stripe.pay(str(paid.checkout_session_id))
    await world.webhook("evt_paid", "checkout.session.completed", str(paid.checkout_session_id))
    world.clock.advance(timedelta(minutes=30))
    await world.expiry.run_pass()
    second_unpaid = await _open(world, "auc-2", minutes=60)
    world.clock.advance(timedelta(minutes=1))
    await world.windows.terminate(second_unpaid.id, ADMIN)
    await _open(world, "auc-3", minutes=60)

    record = await _operations(world).buyer_record("buyer-1", ADMIN, days=90)

    assert (record.opened, record.paid, record.unpaid, record.unsettled) == (4, 1, 2, 1)
    assert record.unpaid_by_reason["window_elapsed"] == 1
    assert record.unpaid_by_reason["admin_terminated"] == 1
    assert record.last_unpaid is not None
    assert record.last_unpaid.session_id == second_unpaid.id
    assert first_unpaid.id != second_unpaid.id
    nobody = await _operations(world).buyer_record("buyer-never-seen", ADMIN)
    assert (nobody.opened, nobody.last_unpaid) == (0, None)


async def test_an_audit_trail_is_for_admins_and_the_windows_maker_only() -> None:
    world = World()
    session = await world.open()
    await world.windows.extend(session.id, 5, MAKER)
    operations = _operations(world)

    trail = await operations.audit_trail(session.id, ADMIN)
    assert [record.action for record in trail][:2] == [
        "payment_window_opened",
        "payment_window_extended",
    ]
    assert await operations.audit_trail(session.id, MAKER) == trail
    with pytest.raises(SessionNotFound):
        await operations.audit_trail(session.id, OTHER_MAKER)
    with pytest.raises(SessionNotFound):
        await operations.audit_trail("pw_nobody", ADMIN)
    with pytest.raises(OverrideNotAllowed):
        await operations.audit_trail(session.id, BUYER)


def test_durations_read_like_people_write_them() -> None:
    assert parse_duration("2h30m") == timedelta(hours=2, minutes=30)
    assert parse_duration("90s") == timedelta(seconds=90)
    for text in ("", "h", "30", "1w", "0m"):
        with pytest.raises(ValueError):
            parse_duration(text)
