"""The use cases over in-memory fakes of the ports: requests, the expiry pass, Stripe webhooks.

No PostgreSQL, Redis or Stripe: the whole file runs in about a second. The integration tests
prove each real adapter keeps the promises these fakes make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from fakes import (
    FakeChangeFeed,
    FakeClock,
    FakeIndex,
    FakeMetrics,
    FakeRateLimiter,
    FakeReadModel,
    FakeStripe,
    FakeUnitOfWorkFactory,
    sign,
)

from payment_window.bootstrap import build_container
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import (
    ExtensionExceedsPolicy,
    InvalidWebhook,
    OverrideNotAllowed,
    PaymentProviderUnavailable,
    SessionNotFound,
    WindowAlreadyOpen,
    WindowNotOpen,
)
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import PaymentSession, Status
from payment_window.service import OpenWindow
from payment_window.webhooks import Outcome

ADMIN = Actor("ops-1", Role.ADMIN)
SERVICE = Actor("marketplace", Role.SERVICE)
BUYER = Actor("buyer-1", Role.BUYER)
OTHER_BUYER = Actor("buyer-2", Role.BUYER)
MAKER = Actor("maker-user", Role.MAKER, maker_id="maker-1")
POLICY = ExtensionPolicy(
    max_extension_minutes=60, makers_may_override=True, on_expiry=OnExpiry.RELIST
)


def settings(reminders: tuple[int, ...] = (), batch_size: int = 10) -> Settings:
    """The settings the unit tests run with: POLICY as the default, 60-minute windows. The
    store is never opened (the fakes stand in for it): SQLite in memory, no Redis."""
    return Settings(
        database_url="sqlite+aiosqlite://",
        redis_url=None,
        window_minutes=60,
        default_max_extension_minutes=POLICY.max_extension_minutes,
        default_makers_may_override=POLICY.makers_may_override,
        default_on_expiry=POLICY.on_expiry,
        confirmation_recheck_minutes=60,
        expiry_batch_size=batch_size,
        claim_lease_seconds=30,
        reminder_offsets_minutes=list(reminders),
        dogstatsd_host=None,
    )


@dataclass
class World:
    """The use cases as `bootstrap` wires them, with fakes for the outside world."""

    reminders: tuple[int, ...] = ()
    batch_size: int = 10
    clock: FakeClock = field(default_factory=FakeClock)
    uow: FakeUnitOfWorkFactory = field(default_factory=FakeUnitOfWorkFactory)
    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    changes: FakeChangeFeed = field(default_factory=FakeChangeFeed)
    budget: FakeRateLimiter = field(default_factory=FakeRateLimiter)

    def __post_init__(self) -> None:
        self.index = FakeIndex(self.clock)
        self.stripe = FakeStripe(self.clock)
        self.container = build_container(
            settings(self.reminders, self.batch_size),
            clock=self.clock,
            uow=self.uow,
            index=self.index,
            gateway=self.stripe,
            metrics=self.metrics,
            changes=self.changes,  # type: ignore[arg-type]  # publishes; no one subscribes
            read_model=FakeReadModel(self.uow.store),
            expiry_budget=self.budget,
        )
        self.transitions = self.container.transitions
        self.windows = self.container.windows
        self.webhooks = self.container.webhooks
        self.expiry = self.container.expiry_task()

    @property
    def store(self) -> dict[str, PaymentSession]:
        return self.uow.store.sessions

    def recorded(self) -> tuple[object, ...]:
        """Everything a refused request must leave as it was: rows, audit, outbox, index."""
        store = self.uow.store
        return (
            dict(store.sessions),
            list(store.audit),
            [(stored.message, stored.cancelled_at) for stored in store.outbox],
            set(store.stripe_events),
            dict(self.index.schedule),
            len(self.changes.published),
        )

    async def open(self, auction: str = "auc-1", minutes: int = 60) -> PaymentSession:
        request = OpenWindow(
            auction_id=auction,
            maker_id="maker-1",
            buyer_id="buyer-1",
            amount=12_500,
            currency="usd",
            window_minutes=minutes,
        )
        return await self.windows.open(request, SERVICE)

    async def webhook(self, event_id: str, event_type: str, checkout_id: str) -> Outcome:
        payload = self.stripe.event(event_id, event_type, checkout_id)
        return (await self.webhooks.handle(payload, sign(payload))).outcome


# --- requests -------------------------------------------------------------------------------


async def test_an_opened_window_is_stored_indexed_and_has_a_checkout() -> None:
    world = World()
    session = await world.open(minutes=30)

    assert world.store[session.id].status is Status.OPEN
    assert session.checkout_session_id in world.stripe.sessions
    assert world.stripe.keys == [f"open:{session.id}"]
    assert world.index.schedule[session.id] == session.expires_at
    assert world.uow.store.actions(session.id) == ["payment_window_opened"]
    status = await world.windows.status(session.id, BUYER)
    assert status.remaining_seconds == 30 * 60


async def test_a_second_window_for_an_open_auction_is_refused() -> None:
    world = World()
    first = await world.open()
    with pytest.raises(WindowAlreadyOpen) as refused:
        await world.open()
    assert refused.value.session_id == first.id


async def test_another_buyers_window_does_not_exist_for_them() -> None:
    world = World()
    session = await world.open()
    with pytest.raises(SessionNotFound):
        await world.windows.status(session.id, OTHER_BUYER)


async def test_an_extension_moves_the_deadline_and_the_schedule() -> None:
    world = World()
    session = await world.open()
    extended = await world.windows.extend(session.id, 30, MAKER, reason="bank delay")

    assert extended.expires_at == session.expires_at + timedelta(minutes=30)
    assert extended.version == session.version + 1
    assert world.index.schedule[session.id] == extended.expires_at
    assert world.metrics.counts["payments.window.extension_count"] == 1
    # The window now outlives its Stripe session: a new one, and the old one closed.
    assert [c.event for c in world.changes.published] == ["opened", "extended", "rotated"]
    assert extended.checkout_session_id != session.checkout_session_id
    assert world.stripe.sessions[str(session.checkout_session_id)].status == "expired"


async def test_an_extension_past_policy_is_refused_and_changes_nothing() -> None:
    world = World()
    session = await world.open()
    before = world.recorded()
    with pytest.raises(ExtensionExceedsPolicy) as refused:
        await world.windows.extend(session.id, 61, ADMIN)
    assert refused.value.still_allowed == 60
    assert world.recorded() == before
    assert world.stripe.keys == [f"open:{session.id}"]  # no new Stripe session either


async def test_a_buyer_may_not_override() -> None:
    world = World()
    session = await world.open()
    with pytest.raises(OverrideNotAllowed):
        await world.windows.terminate(session.id, BUYER)


async def test_termination_closes_at_stripe_first_then_records() -> None:
    world = World()
    session = await world.open()
    closed = await world.windows.terminate(session.id, ADMIN, reason="fraud")

    assert (closed.status, closed.reason) == (Status.EXPIRED, "admin_terminated")
    assert world.stripe.sessions[str(session.checkout_session_id)].status == "expired"
    assert world.uow.store.actions(session.id)[-1] == "payment_expired"
    assert session.id not in world.index.schedule
    with pytest.raises(WindowNotOpen):
        await world.windows.terminate(session.id, ADMIN)


async def test_termination_of_a_window_paid_meanwhile_records_the_payment() -> None:
    world = World()
    session = await world.open()
    world.stripe.pay(str(session.checkout_session_id))
    closed = await world.windows.terminate(session.id, ADMIN)
    assert closed.status is Status.PAID


async def test_a_stripe_failure_on_terminate_counts_an_attempt_and_changes_nothing_else() -> None:
    world = World()
    session = await world.open()
    world.stripe.fail_next()
    with pytest.raises(PaymentProviderUnavailable):
        await world.windows.terminate(session.id, ADMIN)
    stored = world.store[session.id]
    assert (stored.status, stored.version, stored.expiry_attempts) == (Status.OPEN, 1, 1)
    closed = await world.windows.terminate(session.id, ADMIN)
    assert closed.status is Status.EXPIRED


# --- the expiry pass ------------------------------------------------------------------------


async def test_a_window_expires_at_its_deadline_once() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=29, seconds=59))
    assert (await world.expiry.run_pass()).expired == 0

    world.clock.advance(timedelta(seconds=1))
    report = await world.expiry.run_pass()
    again = await world.expiry.run_pass()

    closed = world.store[session.id]
    assert (report.expired, again.claimed) == (1, 0)
    assert (closed.status, closed.reason) == (Status.EXPIRED, "window_elapsed")
    assert world.stripe.sessions[str(session.checkout_session_id)].status == "expired"
    assert world.uow.store.actions(session.id).count("payment_expired") == 1
    assert world.metrics.counts["payments.window.expired_count"] == 1


async def test_an_index_error_after_the_expiry_commit_is_repaired_not_reported_as_a_failure() -> (
    None
):
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.index.failing_settles = 1  # the index goes away right after the commit

    report = await world.expiry.run_pass()

    closed = world.store[session.id]
    assert closed.status is Status.EXPIRED
    # Not a failure: no attempt recorded, no retry, and the metric and live event still go out.
    assert (closed.expiry_attempts, closed.last_expiry_error) == (0, None)
    assert (report.expired, report.retried) == (1, 0)
    assert world.metrics.counts["payments.window.expired_count"] == 1
    assert [change.event for change in world.changes.published][-1] == "expired"
    assert world.metrics.counts["payments.window.after_commit_failures"] == 1
    # Repaired from the store once the index answers again.
    assert session.id in world.transitions.after_commit.repairs
    assert await world.transitions.after_commit.repairs.repair() == 1
    assert session.id not in world.index.schedule
    assert (await world.expiry.run_pass()).claimed == 0


async def test_an_expiry_failure_is_not_recorded_on_a_window_already_closed() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    await world.expiry.run_pass()
    async with world.uow() as uow:
        attempts = await uow.sessions.record_expiry_failure(session.id, "late error")
        await uow.commit()
    assert attempts == 0
    assert world.store[session.id].expiry_attempts == 0


async def test_a_buyer_who_pays_at_the_last_moment_is_paid_not_expired() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.stripe.pay(str(session.checkout_session_id))

    report = await world.expiry.run_pass()

    assert (report.paid, report.expired) == (1, 0)
    assert world.store[session.id].status is Status.PAID
    assert "payment_expired" not in world.uow.store.actions(session.id)


async def test_a_reminder_goes_out_once_before_the_deadline() -> None:
    world = World(reminders=(15,))
    session = await world.open(minutes=60)
    world.clock.advance(timedelta(minutes=45))

    first = await world.expiry.run_pass()
    second = await world.expiry.run_pass()

    assert (first.reminded, second.reminded) == (1, 0)
    assert world.uow.store.actions(session.id).count("reminder_sent") == 1
    assert world.store[session.id].reminders_sent == (15,)
    assert world.index.schedule[session.id] == session.expires_at


async def test_a_stripe_failure_counts_an_attempt_and_the_retry_uses_a_new_key() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    world.stripe.fail_next()

    failed = await world.expiry.run_pass()
    stored = world.store[session.id]
    assert (failed.retried, stored.status, stored.expiry_attempts) == (1, Status.OPEN, 1)
    assert world.index.schedule[session.id] > world.clock.now()

    world.clock.advance(timedelta(minutes=10))
    retried = await world.expiry.run_pass()

    assert retried.expired == 1
    expire_keys = [key for key in world.stripe.keys if key.startswith("expire:")]
    assert len(expire_keys) == len(set(expire_keys)) == 2


async def test_a_checkout_stripe_no_longer_knows_closes_as_checkout_missing() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.stripe.lose(str(session.checkout_session_id))
    world.clock.advance(timedelta(minutes=31))

    await world.expiry.run_pass()

    closed = world.store[session.id]
    assert (closed.status, closed.reason) == (Status.EXPIRED, "checkout_missing")


async def test_a_claim_whose_window_is_gone_is_dropped() -> None:
    world = World()
    session = await world.open(minutes=30)
    del world.store[session.id]
    world.clock.advance(timedelta(minutes=31))

    report = await world.expiry.run_pass()

    assert report.dropped == 1
    assert session.id not in world.index.schedule


# --- Stripe webhooks ------------------------------------------------------------------------


async def test_a_completed_checkout_pays_the_window_once() -> None:
    world = World()
    session = await world.open()
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay(checkout_id)

    first = await world.webhook("evt_1", "checkout.session.completed", checkout_id)
    again = await world.webhook("evt_1", "checkout.session.completed", checkout_id)

    assert (first, again) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert world.store[session.id].status is Status.PAID
    assert session.id not in world.index.schedule


async def test_an_event_for_an_unknown_checkout_changes_nothing() -> None:
    world = World()
    session = await world.open(auction="auc-2")
    stranger = await world.stripe.create(session, world.clock.now(), "elsewhere")
    world.stripe.pay(stranger.id)
    before = world.recorded()
    outcome = await world.webhook("evt_2", "checkout.session.completed", stranger.id)
    assert outcome is Outcome.UNKNOWN_SESSION
    assert world.recorded() == before
    # Not even the event id is kept: Stripe's retry may find the window once it exists.
    assert "evt_2" not in world.uow.store.stripe_events


async def test_a_payment_after_expiry_is_recorded_as_late() -> None:
    world = World()
    session = await world.open(minutes=30)
    world.clock.advance(timedelta(minutes=30))
    await world.expiry.run_pass()
    checkout_id = str(session.checkout_session_id)
    world.stripe.pay(checkout_id)  # Stripe's own race: paid as it was being expired

    outcome = await world.webhook("evt_3", "checkout.session.completed", checkout_id)

    paid = world.store[session.id]
    assert (outcome, paid.status) == (Outcome.APPLIED, Status.PAID)
    assert paid.reason == "paid_after_close"
    late = world.uow.store.audit[-1]
    assert (late.action, late.from_status, late.to_status) == (
        "payment_completed",
        "expired",
        "paid",
    )
    assert late.details["lateAfterExpiry"] is True and late.details["followUpsCancelled"] == 1
    assert late.details["closedReason"] == "window_elapsed"  # why it had closed stays recorded
    events = world.uow.store.events(session.id)
    assert "auction.relist_requested" not in events  # cancelled before it left
    assert "operations.late_payment_after_expiry" in events


async def test_a_webhook_with_a_bad_signature_is_refused() -> None:
    world = World()
    session = await world.open()
    payload = world.stripe.event(
        "evt_4", "checkout.session.completed", str(session.checkout_session_id)
    )
    before = world.recorded()
    with pytest.raises(InvalidWebhook):
        await world.webhooks.handle(payload, "forged")
    assert world.recorded() == before
