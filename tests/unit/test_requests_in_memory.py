"""Requests over in-memory fakes: policies, who may open and override, what a store failure
after Stripe leaves behind, and the steps after a commit (index, live events) failing without
failing the change, then repaired from the store (`IndexRepairs`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import structlog
from structlog.testing import capture_logs
from test_use_cases import ADMIN, BUYER, MAKER, POLICY, SERVICE, World

from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import (
    OverrideNotAllowed,
    PreconditionFailed,
    SessionNotFound,
)
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import Status
from payment_window.service import OpenWindow

OTHER_MAKER = Actor("maker-2-user", Role.MAKER, maker_id="maker-2")
STRICT = ExtensionPolicy(
    max_extension_minutes=0, makers_may_override=False, on_expiry=OnExpiry.NOTIFY_MAKER
)


@pytest.fixture(autouse=True)
def _fresh_log_context() -> None:
    structlog.contextvars.clear_contextvars()


# --- policies -------------------------------------------------------------------------------


async def test_a_maker_without_a_policy_reads_the_defaults_and_admins_may_replace_them() -> None:
    world = World()
    assert world.windows.default_policy == POLICY
    assert await world.windows.policy_for("maker-1", MAKER) == POLICY

    await world.windows.set_policy("maker-1", STRICT, ADMIN)

    assert await world.windows.policy_for("maker-1", ADMIN) == STRICT
    assert await world.windows.policy_for("maker-1", MAKER) == STRICT


async def test_only_admins_set_policies_and_only_the_maker_or_admins_read_them() -> None:
    world = World()
    with pytest.raises(OverrideNotAllowed):
        await world.windows.set_policy("maker-1", STRICT, MAKER)
    with pytest.raises(OverrideNotAllowed):
        await world.windows.policy_for("maker-1", OTHER_MAKER)
    with pytest.raises(OverrideNotAllowed):
        await world.windows.policy_for("maker-1", BUYER)
    assert world.uow.store.policies == {}


async def test_a_makers_policy_decides_what_its_closed_windows_ask_of_the_auction() -> None:
    world = World()
    await world.windows.set_policy("maker-1", STRICT, ADMIN)
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    await world.expiry.run_pass()
    events = world.uow.store.events(session.id)
    assert "auction.maker_review_requested" in events
    assert "auction.relist_requested" not in events


# --- opening --------------------------------------------------------------------------------


async def test_a_window_without_a_length_gets_the_configured_one() -> None:
    world = World()
    request = OpenWindow(
        auction_id="auc-default",
        maker_id="maker-1",
        buyer_id="buyer-1",
        amount=12_500,
        currency="usd",
    )
    session = await world.windows.open(request, SERVICE)
    assert session.expires_at == world.clock.now() + timedelta(minutes=60)


async def test_a_buyer_may_not_open_a_window_and_nothing_reaches_stripe() -> None:
    world = World()
    request = OpenWindow(
        auction_id="auc-1", maker_id="maker-1", buyer_id="buyer-1", amount=500, currency="usd"
    )
    with pytest.raises(OverrideNotAllowed):
        await world.windows.open(request, BUYER)
    assert (world.stripe.keys, world.uow.store.sessions) == ([], {})


async def test_a_store_failure_after_stripe_made_the_session_closes_that_session() -> None:
    world = World()
    world.uow.store.failing_commits = 1

    with pytest.raises(ConnectionError):
        await world.open()

    assert world.uow.store.sessions == {} and world.uow.store.audit == []
    (checkout,) = world.stripe.sessions.values()
    assert checkout.status == "expired"  # nobody can pay into a window that was never stored
    assert world.index.schedule == {}


# --- overriding -----------------------------------------------------------------------------


async def test_another_makers_window_does_not_exist_for_a_maker() -> None:
    world = World()
    session = await world.open()
    with pytest.raises(SessionNotFound):
        await world.windows.extend(session.id, 10, OTHER_MAKER)


async def test_a_maker_whose_policy_forbids_overrides_is_refused_and_nothing_changes() -> None:
    world = World()
    await world.windows.set_policy("maker-1", STRICT, ADMIN)
    session = await world.open()
    with pytest.raises(OverrideNotAllowed):
        await world.windows.terminate(session.id, MAKER)
    assert world.store[session.id] == session
    assert world.uow.store.actions(session.id) == ["payment_window_opened"]


async def test_an_override_naming_a_stale_version_is_refused_and_nothing_changes() -> None:
    world = World()
    session = await world.open()
    await world.windows.extend(session.id, 5, ADMIN)
    extended = world.store[session.id]

    with pytest.raises(PreconditionFailed):
        await world.windows.terminate(session.id, ADMIN, if_match=session.version)

    assert world.store[session.id] == extended
    closed = await world.windows.terminate(session.id, ADMIN, if_match=extended.version)
    assert closed.status is Status.EXPIRED


# --- after the commit: index and live events ------------------------------------------------


async def test_an_extension_committed_while_the_index_is_down_succeeds_and_is_repaired() -> None:
    world = World()
    session = await world.open()
    world.index.down = True

    with capture_logs() as logs:
        extended = await world.windows.extend(session.id, 20, ADMIN)

    assert world.store[session.id] == extended  # the store has it: the request succeeded
    assert (
        session.id in world.transitions.after_commit.repairs
        and len(world.transitions.after_commit.repairs) == 1
    )
    # Two announcements missed the index: `extended`, and `rotated` (a new Stripe session).
    assert world.metrics.counts["payments.window.after_commit_failures"] == 2
    assert "after_commit_step_failed" in [line["event"] for line in logs]
    # This process's reads skip the stale entry and come from the store.
    status = await world.windows.status(session.id, BUYER)
    assert status.expires_at == extended.expires_at

    with pytest.raises(ConnectionError):  # still down: the repair loop logs it and waits
        await world.transitions.after_commit.repairs.repair()
    world.index.down = False
    repaired = await world.transitions.after_commit.repairs.repair()

    assert repaired == 1 and len(world.transitions.after_commit.repairs) == 0
    assert world.index.schedule[session.id] == extended.expires_at
    assert world.index.wakes >= 1  # a sleeping worker hears of the new deadline


async def test_the_repair_loop_retries_until_the_index_takes_the_window() -> None:
    world = World()
    session = await world.open()
    world.index.down = True
    with capture_logs():
        extended = await world.windows.extend(session.id, 20, ADMIN)
    stop = asyncio.Event()

    with capture_logs() as logs:
        loop = asyncio.create_task(world.transitions.after_commit.repairs.run(stop))
        await asyncio.sleep(0.05)
        assert "index_repair_failed" in [line["event"] for line in logs]
        assert session.id in world.transitions.after_commit.repairs
        world.index.down = False
        for _ in range(40):
            if session.id not in world.transitions.after_commit.repairs:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await loop

    assert session.id not in world.transitions.after_commit.repairs
    assert world.index.schedule[session.id] == extended.expires_at


async def test_live_events_that_cannot_be_sent_do_not_fail_the_change() -> None:
    world = World()
    session = await world.open()
    world.changes.down = True

    with capture_logs():
        closed = await world.windows.terminate(session.id, ADMIN)

    assert world.store[session.id] == closed
    assert session.id not in world.index.schedule
    assert world.metrics.counts["payments.window.after_commit_failures"] == 1
