"""A window's whole life under random interleavings, checked against a simple model (hypothesis).

A `RuleBasedStateMachine` opens short windows (through the use case or the API), extends and
terminates them as an admin, lets buyers pay at the local Stripe (paid, or a delayed payment the
bank settles later), delivers the webhook events Stripe owes — signed, through the real endpoint
or `webhooks.handle`, in any order and more than once — runs expiry passes, injects Stripe faults
and lets real time pass so deadlines go by. The store is PostgreSQL and the index Redis (or the
SQL index), as in production; nothing of ours is mocked.

After every step the store, audit log, outbox, index and Stripe are checked against what may be
true of each window; at the end every owed event is delivered and a buyer whose money Stripe took
must own a paid window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
import redis.asyncio
from api_harness import api_settings, assert_error_shape, running_api
from devstripe.events import event_for, signature_header
from devstripe.store import StripeError
from devstripe.testing import RunningStripe
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moments import until_index_time
from pydantic import SecretStr
from sqlalchemy import select, text

from payment_window.adapters.tables import audit_log, metadata, outbox
from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import (
    InvalidWindow,
    PaymentProviderUnavailable,
    WindowNotOpen,
)
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import PAID_AFTER_CLOSE, PaymentSession
from payment_window.reconcile import reconcile
from payment_window.service import OpenWindow
from payment_window.webhooks import Outcome

SECRET = "whsec_lifecycle_model_0123456789abcdef"
JWT_SECRET = "lifecycle-model-secret-0123456789abcdef0123456789abcdef"
ADMIN = Actor("admin-1", Role.ADMIN)
SERVICE = Actor("marketplace", Role.SERVICE)
RELIST_MAKER = "maker-relist"
REVIEW_MAKER = "maker-review"
SECOND_CHANCE_MAKER = "maker-second-chance"
FOLLOW_UP = {
    RELIST_MAKER: "auction.relist_requested",
    REVIEW_MAKER: "auction.maker_review_requested",
    SECOND_CHANCE_MAKER: "auction.second_chance_requested",
}
MAKERS = tuple(FOLLOW_UP)  # one per `onExpiry` policy
MAX_WINDOWS = 4
# Real seconds one example may sleep: enough for its first windows' deadlines to pass.
SLEEP_BUDGET = 3.0
# Audit actions that are a state change: each bumps the stored version by one.
VERSIONED = frozenset(
    {
        "payment_window_extended",
        "payment_expired",
        "payment_completed",
        "payment_pending",
        "checkout_rotated",
    }
)
KNOWN_EVENTS = frozenset(
    {
        "payment_window.extended",
        "payment_window.expired",
        "payment_window.terminated",
        "payments.checkout.expired",
        "auction.relist_requested",
        "auction.maker_review_requested",
        "auction.second_chance_requested",
        "payment_window.paid",
        "auction.payment_received",
        "operations.late_payment_after_expiry",
        "operations.checkout_missing",
        "payment.duplicate_detected",
    }
)
# What each window may move to from what was last seen (a final state stays; the one exception,
# a late payment on an expired window, is checked by its reason).
ALLOWED = {
    "open": {"open", "awaiting_payment_confirmation", "paid", "expired"},
    "awaiting_payment_confirmation": {"awaiting_payment_confirmation", "paid", "expired"},
    "paid": {"paid"},
    "expired": {"expired", "paid"},
}
EXAMPLES = int(os.environ.get("PW_LIFECYCLE_EXAMPLES", "0"))


@dataclass
class World:
    """What lives for the whole test: the event loop, a migrated schema and the local Stripe."""

    loop: asyncio.AbstractEventLoop
    base: Settings
    redis_url: str | None
    stripe: RunningStripe
    captured: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def capture(self) -> None:
        """Stands in for the stand-in's webhook sender: keep every event Stripe owes."""
        # Each event comes with the connected account it happened on (None here: the platform).
        events = [(kind, session) for kind, session, _ in self.stripe.app.store.take_events()]
        with self.lock:
            self.captured.extend(events)

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        self.capture()
        with self.lock:
            events, self.captured = self.captured, []
        return events


@dataclass
class Window:
    """The model of one window: what was last seen of it, and what we did to it."""

    id: str
    auction_id: str
    maker_id: str
    deadline: datetime
    checkouts: list[str]
    status: str = "open"
    reason: str | None = None
    version: int = 1
    extensions: int = 0
    extended_minutes: int = 0


@dataclass
class Delivery:
    """One Stripe event, its id fixed once made, so a redelivery is the same event."""

    event_type: str
    checkout_id: str
    payload: bytes


class LifecycleModel(RuleBasedStateMachine):
    world: World
    STATS: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[Window] = []
        self.pending: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self.slept = 0.0
        world = self.world
        world.stripe.reset()
        world.drain()
        self.prefix = f"t:{uuid.uuid4().hex[:12]}:"
        update: dict[str, Any] = {
            "stripe_api_key": SecretStr(world.stripe.api_key),
            "stripe_api_base": world.stripe.url,
            "stripe_max_network_retries": 0,
            "stripe_expire_rps": 100_000.0,
            "stripe_rps": 100_000.0,
            "stripe_webhook_secret": SecretStr(SECRET),
            "jwt_secret": SecretStr(JWT_SECRET),
            "reminder_offsets_minutes": [],
            "confirmation_recheck_minutes": 0.02,
        }
        if world.redis_url:
            update |= {"redis_url": world.redis_url, "redis_prefix": self.prefix}
        self.settings = world.base.model_copy(update=update)
        self.container: Container = self.run(self._start())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(container=self.container)),
            base_url="http://testserver",
        )

    def run(self, coroutine: Any) -> Any:
        return self.world.loop.run_until_complete(coroutine)

    async def _start(self) -> Container:
        container = await bootstrap(self.settings)
        names = ", ".join(
            f'"{self.settings.database_schema}"."{table.name}"' for table in metadata.sorted_tables
        )
        async with container.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        review = ExtensionPolicy(1440, makers_may_override=False, on_expiry=OnExpiry.NOTIFY_MAKER)
        await container.windows.set_policy(REVIEW_MAKER, review, ADMIN)
        second_chance = ExtensionPolicy(
            1440, makers_may_override=False, on_expiry=OnExpiry.OFFER_NEXT_BIDDER
        )
        await container.windows.set_policy(SECOND_CHANCE_MAKER, second_chance, ADMIN)
        return container

    def headers(self, role: str, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.settings, sub, role)}"}

    def faults_armed(self) -> bool:
        """Whether an injected Stripe fault may still hit a call (so a 503 is expected)."""
        faults = self.world.stripe.app.faults
        with faults._lock:
            return any(f.count is None or f.count > 0 for f in faults._pending)

    def pick(self, number: int) -> Window:
        """A window; most often one still open or awaiting (a settled one only refuses)."""
        live = [w for w in self.windows if w.status in ("open", "awaiting_payment_confirmation")]
        choices = live if live and number < 3 * MAX_WINDOWS else self.windows
        return choices[number % len(choices)]

    async def row(self, session_id: str) -> PaymentSession:
        async with self.container.uow() as uow:
            session = await uow.sessions.get(session_id)
        assert session is not None, f"window {session_id} vanished from the store"
        return session

    # --- opening ---------------------------------------------------------------------------------

    @initialize(
        opens=st.lists(
            st.tuples(st.booleans(), st.sampled_from([1.5, 2.0, 2.5]), st.sampled_from(MAKERS)),
            min_size=1,
            max_size=3,
        )
    )
    def first_windows(self, opens: list[tuple[bool, float, str]]) -> None:
        for via_api, seconds, maker_id in opens:
            self.open_window(via_api, seconds, maker_id)

    @precondition(lambda self: len(self.windows) < MAX_WINDOWS)
    @rule(
        via_api=st.booleans(),
        seconds=st.sampled_from([1.5, 2.0, 3.0]),
        maker_id=st.sampled_from(MAKERS),
    )
    def open_window(self, via_api: bool, seconds: float, maker_id: str) -> None:
        self.run(self._open(via_api, seconds, maker_id))

    async def _open(self, via_api: bool, seconds: float, maker_id: str) -> None:
        auction_id = f"auc-{uuid.uuid4().hex[:10]}"
        ends = self.container.clock.now() + timedelta(seconds=seconds)
        session_id: str | None = None
        if via_api:
            response = await self.client.post(
                "/payments/checkout",
                json={
                    "auctionId": auction_id,
                    "makerId": maker_id,
                    "buyerId": "buyer-1",
                    "amount": 12_500,
                    "currency": "usd",
                    "expiresAt": ends.isoformat().replace("+00:00", "Z"),
                },
                headers=self.headers("service", "marketplace"),
            )
            if response.status_code == 422:
                # Only when the request took longer than the window was to last.
                assert response.json()["error"]["code"] == "invalid_window", response.text
                assert self.container.clock.now() >= ends.replace(microsecond=0), response.text
                return
            assert response.status_code in (201, 503), response.text
            if response.status_code == 201:
                session_id = response.json()["sessionId"]
        else:
            request = OpenWindow(auction_id, maker_id, "buyer-1", 12_500, "usd", expires_at=ends)
            try:
                session_id = (await self.container.windows.open(request, SERVICE)).id
            except PaymentProviderUnavailable:
                pass
            except InvalidWindow:
                assert self.container.clock.now() >= ends.replace(microsecond=0)
                return
        if session_id is None:
            # Stripe failed: nothing was stored.
            async with self.container.uow() as uow:
                assert await uow.sessions.unsettled_for_auction(auction_id) is None
            return
        row = await self.row(session_id)
        assert row.checkout_session_id is not None
        # Whole seconds, never longer than asked.
        assert row.expires_at == ends.replace(microsecond=0)
        self.windows.append(
            Window(session_id, auction_id, maker_id, row.expires_at, [row.checkout_session_id])
        )

    # --- overrides -------------------------------------------------------------------------------

    @precondition(lambda self: self.windows)
    @rule(
        number=st.integers(0, 4 * MAX_WINDOWS - 1),
        minutes=st.sampled_from([1, 45]),
        old_link_survives=st.booleans(),
    )
    def extend(self, number: int, minutes: int, old_link_survives: bool) -> None:
        """An admin extends; 45 minutes outlives the Stripe session, so a new one is made and
        the old one expired — which may fail, leaving the old link payable."""
        window = self.pick(number)
        if old_link_survives:
            self.world.stripe.fail_next(1, 500, path=f"{window.checkouts[-1]}/expire")
        self.run(self._extend(window, minutes))

    async def _extend(self, window: Window, minutes: int) -> None:
        armed = self.faults_armed()
        before = self.container.clock.now()
        response = await self.client.post(
            f"/payments/window/{window.id}/override",
            json={"action": "extend", "minutes": minutes},
            headers=self.headers("admin", "admin-1"),
        )
        after = self.container.clock.now()
        code = response.status_code
        LifecycleModel.STATS[f"extend:{code}:{minutes}"] += 1
        if code == 200:
            assert window.status == "open", f"extended a window last seen {window.status}"
            assert window.deadline > before, "extended a window past its deadline"
            assert response.json()["expiresAt"] is not None
            window.extensions += 1
            window.extended_minutes += minutes
            window.deadline += timedelta(minutes=minutes)
            assert (await self.row(window.id)).expires_at == window.deadline
        elif code == 409:
            if window.status == "open":
                # Past its deadline, closed or not yet: the contract's 409 window_elapsed.
                assert window.deadline <= after, response.text
                assert response.json()["error"]["code"] == "window_elapsed", response.text
        elif code == 422:
            assert window.extended_minutes + minutes > 1440, response.text
        else:
            assert code == 503 and armed, response.text

    @precondition(lambda self: self.windows)
    @rule(number=st.integers(0, 4 * MAX_WINDOWS - 1), via_api=st.booleans())
    def terminate(self, number: int, via_api: bool) -> None:
        self.run(self._terminate(self.pick(number), via_api))

    async def _terminate(self, window: Window, via_api: bool) -> None:
        armed = self.faults_armed()
        if via_api:
            response = await self.client.post(
                f"/payments/window/{window.id}/override",
                json={"action": "terminate", "reason": "model"},
                headers=self.headers("admin", "admin-1"),
            )
            code, body = response.status_code, response.json()
        else:
            try:
                closed = await self.container.windows.terminate(window.id, ADMIN, reason="model")
                code, body = 200, {"status": closed.status.value, "reason": closed.reason}
            except PaymentProviderUnavailable:
                code, body = 503, {}
            except WindowNotOpen:
                code, body = 409, {}
        LifecycleModel.STATS[f"terminate:{code}:{body.get('status')}"] += 1
        if window.status == "open":
            assert code in (200, 503), body
            assert code == 200 or armed, body
            if code == 200:
                # Closed, or the buyer had completed checkout meanwhile: then it is a payment.
                assert (body["status"], body["reason"]) == ("expired", "admin_terminated") or (
                    body["status"] in ("paid", "awaiting_payment_confirmation")
                ), body
        else:
            assert code == 409, body

    # --- the buyer and the bank at Stripe --------------------------------------------------------

    @precondition(lambda self: self.windows)
    @rule(number=st.integers(0, 4 * MAX_WINDOWS - 1), which=st.integers(0, 3), paid=st.booleans())
    def buyer_pays(self, number: int, which: int, paid: bool) -> None:
        window = self.pick(number)
        checkout = window.checkouts[-1 - which % len(window.checkouts)]
        # A session no longer open at Stripe refuses the buyer.
        with contextlib.suppress(StripeError):
            self.world.stripe.complete(checkout, paid=paid)

    @precondition(lambda self: self.windows)
    @rule(number=st.integers(0, 4 * MAX_WINDOWS - 1), succeeded=st.booleans())
    def bank_settles(self, number: int, succeeded: bool) -> None:
        for checkout in self.pick(number).checkouts:
            try:
                self.world.stripe.app.store.settle_delayed_payment(checkout, succeeded=succeeded)
            except StripeError:
                continue  # nothing pending on this one
            return

    # --- webhooks ------------------------------------------------------------------------------

    @precondition(lambda self: self.pending)
    @rule(number=st.integers(0, 20), via_api=st.booleans())
    def deliver(self, number: int, via_api: bool) -> None:
        """Stripe delivers an owed event, in any order; a failed delivery is retried later."""
        delivery = self.pending[number % len(self.pending)]
        outcome = self.run(self._deliver(delivery, via_api))
        if outcome is None:
            return
        self.pending.remove(delivery)
        self.delivered.append(delivery)
        LifecycleModel.STATS[f"deliver:{delivery.event_type}:{outcome}"] += 1
        known = any(delivery.checkout_id in w.checkouts for w in self.windows)
        if known:
            assert outcome in (Outcome.APPLIED, Outcome.UNCHANGED), outcome
        else:
            assert outcome is Outcome.UNKNOWN_SESSION, outcome

    @precondition(lambda self: self.delivered)
    @rule(number=st.integers(0, 20), via_api=st.booleans())
    def redeliver(self, number: int, via_api: bool) -> None:
        """Stripe delivers an event again (same id): acknowledged, nothing changes."""
        delivery = self.delivered[number % len(self.delivered)]
        outcome = self.run(self._deliver(delivery, via_api))
        if outcome is None:
            return
        known = any(delivery.checkout_id in w.checkouts for w in self.windows)
        expected = Outcome.DUPLICATE if known else Outcome.UNKNOWN_SESSION
        assert outcome is expected, outcome

    async def _deliver(self, delivery: Delivery, via_api: bool) -> Outcome | None:
        """The outcome, or None when Stripe was unavailable to the handler (a 503: retried)."""
        armed = self.faults_armed()
        header = signature_header(delivery.payload, SECRET)
        if via_api:
            response = await self.client.post(
                "/payments/stripe/webhook",
                content=delivery.payload,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
            if response.status_code == 503 and armed:
                return None
            assert response.status_code == 200, response.text
            return Outcome(response.json()["outcome"])
        try:
            result = await self.container.webhooks.handle(delivery.payload, header)
        except PaymentProviderUnavailable:
            assert armed
            return None
        return result.outcome

    # --- time, workers, faults -----------------------------------------------------------------

    @rule()
    def expiry_pass(self) -> None:
        self.run(self.container.expiry_task().run_pass())

    @precondition(lambda self: self.slept < SLEEP_BUDGET)
    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0]), then_pass=st.booleans())
    def advance_clock(self, seconds: float, then_pass: bool) -> None:
        """Real time passes (the index judges deadlines by Redis's or PostgreSQL's clock),
        and a worker may wake at the end of it."""
        time.sleep(seconds)
        self.slept += seconds
        if then_pass:
            self.expiry_pass()

    @rule(kind=st.sampled_from(["500", "429", "expire-500", "drop", "drop-after"]))
    def stripe_fault(self, kind: str) -> None:
        stripe = self.world.stripe
        if kind == "500":
            stripe.fail_next(1, 500)
        elif kind == "429":
            stripe.rate_limit_next(1)
        elif kind == "expire-500":
            stripe.fail_next(1, 500, path="/expire")
        elif kind == "drop":
            stripe.drop_next(1)
        else:
            stripe.drop_next(1, after_processing=True)

    @rule()
    def reconcile_index(self) -> None:
        """The index agrees with the store after `reconcile`, exactly."""
        self.run(self._reconciled())

    async def _reconciled(self) -> None:
        await reconcile(self.container.read_model, self.container.index)
        scheduled = await self.container.index.scheduled_ids()
        should = {w.id for w in self.windows if (await self.row(w.id)).is_scheduled}
        assert scheduled == should

    # --- the checks ----------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        for event_type, session in self.world.drain():
            self.pending.append(Delivery(event_type, session["id"], event_for(session, event_type)))
        async with self.container.engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM payment_sessions"))
        assert count == len(self.windows), "a window is stored that nobody opened"
        scheduled = await self.container.index.scheduled_ids()
        for window in self.windows:
            await self._check_window(window, scheduled)

    async def _check_window(self, window: Window, scheduled: set[str]) -> None:
        row = await self.row(window.id)
        status, reason = row.status.value, row.reason
        if row.checkout_session_id not in window.checkouts:
            assert row.checkout_session_id is not None
            window.checkouts.append(row.checkout_session_id)
        # One final state; final states never change, but for a late payment.
        assert status in ALLOWED[window.status], f"{window.status} -> {status}"
        if window.status == "paid":
            assert reason == window.reason, f"a paid window's reason moved to {reason}"
        if window.status == "expired" and status == "paid":
            assert reason == PAID_AFTER_CLOSE, reason
        if window.status == "expired" and status == "expired":
            assert reason == window.reason
        assert row.version >= window.version
        assert row.expires_at == window.deadline, "the deadline moved without an extension"

        actions, changes = await self._audit(window.id)
        count = Counter(action for action, *_ in actions)
        assert count["payment_window_opened"] == 1
        assert row.version == 1 + len(changes), (row.version, actions)
        chain = "open"
        for _, from_status, to_status, _ in changes:
            assert from_status == chain, (chain, actions)
            chain = to_status
        assert chain == status, (chain, status)
        assert count["payment_window_extended"] == window.extensions
        for once in ("payment_expired", "payment_completed", "payment_pending"):
            assert count[once] <= 1, actions
        order = [action for action, *_ in changes]
        if "payment_completed" in order and "payment_expired" in order:
            # Never expired after a payment was recorded; paid after closing only as a late one.
            assert order.index("payment_expired") < order.index("payment_completed")
            assert reason == PAID_AFTER_CLOSE
        expired_n, completed_n = count["payment_expired"], count["payment_completed"]
        if status == "open":
            assert expired_n == completed_n == count["payment_pending"] == 0
        elif status == "awaiting_payment_confirmation":
            assert (expired_n, completed_n, count["payment_pending"]) == (0, 0, 1)
        elif status == "paid":
            assert completed_n == 1 and row.paid_at is not None
            assert expired_n == (1 if reason == PAID_AFTER_CLOSE else 0)
        else:
            assert (expired_n, completed_n) == (1, 0)
            [details] = [d for a, _, _, d in changes if a == "payment_expired"]
            assert details["reason"] == reason
        if reason == "window_elapsed" or (status == "paid" and row.expired_at is not None):
            closed_reason = next(
                (d["reason"] for a, _, _, d in changes if a == "payment_expired"), None
            )
            if closed_reason == "window_elapsed":
                assert row.expired_at is not None and row.expired_at >= row.expires_at, (
                    "expired before its deadline"
                )

        events = await self._outbox(window.id)
        kinds = Counter(event for event, _, _ in events)
        assert set(kinds) <= KNOWN_EVENTS, kinds
        assert kinds["payment_window.expired"] + kinds["payment_window.terminated"] == 2 * expired_n
        assert kinds["payments.checkout.expired"] == expired_n
        follow_ups = [(e, cancelled) for e, _, cancelled in events if e in FOLLOW_UP.values()]
        assert [e for e, _ in follow_ups] == [FOLLOW_UP[window.maker_id]] * expired_n, events
        late = reason == PAID_AFTER_CLOSE
        assert [c for _, c in follow_ups] == [late] * expired_n, "follow-up (un)cancelled wrongly"
        assert kinds["payment_window.paid"] == 2 * (completed_n + count["payment_pending"])
        assert kinds["auction.payment_received"] == completed_n
        assert kinds["operations.late_payment_after_expiry"] == int(late)
        assert kinds["payment.duplicate_detected"] == count["duplicate_payment_detected"]
        assert kinds["operations.checkout_missing"] == count["operations_alerted"] == 0
        assert kinds["payment_window.extended"] == 2 * window.extensions
        assert all(not cancelled for e, _, cancelled in events if e not in FOLLOW_UP.values()), (
            events
        )

        # Stripe first: expired only once Stripe can no longer take the money on its session;
        # paid (or awaiting) only when Stripe says that session was completed.
        at_stripe = self.world.stripe.session(row.checkout_session_id or "")
        if status == "expired":
            assert at_stripe["status"] != "open", "expired while Stripe can still take the money"
        elif status == "paid":
            assert (at_stripe["status"], at_stripe["payment_status"]) == ("complete", "paid")
        elif status == "awaiting_payment_confirmation":
            assert at_stripe["status"] == "complete"

        # The index agrees with the store after every committed change.
        snapshot = await self.container.index.snapshot(window.id)
        assert snapshot is not None, "the index lost a window"
        assert (snapshot.status, snapshot.version) == (row.status, row.version), "index is stale"
        assert abs(snapshot.expires_at - row.expires_at) < timedelta(milliseconds=1)
        assert (window.id in scheduled) == row.is_scheduled, "schedule disagrees with the store"

        window.status, window.reason, window.version = status, reason, row.version

    async def _audit(
        self, session_id: str
    ) -> tuple[list[tuple[str, str | None, str, dict[str, Any]]], list[Any]]:
        async with self.container.engine.connect() as connection:
            rows = await connection.execute(
                select(
                    audit_log.c.action,
                    audit_log.c.from_status,
                    audit_log.c.to_status,
                    audit_log.c.details,
                )
                .where(audit_log.c.session_id == session_id)
                .order_by(audit_log.c.id)
            )
            actions = [(r.action, r.from_status, r.to_status, r.details) for r in rows]
        return actions, [a for a in actions if a[0] in VERSIONED]

    async def _outbox(self, session_id: str) -> list[tuple[str, str, bool]]:
        async with self.container.engine.connect() as connection:
            rows = await connection.execute(
                select(outbox.c.event_type, outbox.c.destination, outbox.c.cancelled_at)
                .where(outbox.c.session_id == session_id)
                .order_by(outbox.c.id)
            )
            return [(r.event_type, r.destination, r.cancelled_at is not None) for r in rows]

    # --- the end -------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self.run(self._settle())
        finally:
            self.run(self._close())

    async def _settle(self) -> None:
        """Stripe heals and delivers everything it owes; then whoever paid owns a paid window."""
        self.world.stripe.clear_faults()
        for _ in range(10):
            await self._check()
            if not self.pending:
                break
            for delivery in list(self.pending):
                outcome = await self._deliver(delivery, via_api=False)
                assert outcome is not None
                self.pending.remove(delivery)
        assert not self.pending
        await self.container.expiry_task().run_pass()
        await self._check()
        for window in self.windows:
            for checkout in window.checkouts:
                at_stripe = self.world.stripe.session(checkout)
                if (at_stripe["status"], at_stripe["payment_status"]) == ("complete", "paid"):
                    assert window.status == "paid", (
                        f"the buyer paid on {checkout} but the window is {window.status}"
                    )
        LifecycleModel.STATS.update(f"final:{w.status}:{w.reason}" for w in self.windows)
        LifecycleModel.STATS["examples"] += 1

    async def _close(self) -> None:
        await self.client.aclose()
        await self.container.close()
        if self.world.redis_url:
            client = redis.asyncio.Redis.from_url(self.world.redis_url)
            try:
                keys = [key async for key in client.scan_iter(match=f"{self.prefix}*")]
                if keys:
                    await client.unlink(*keys)
            finally:
                await client.aclose()


@pytest.fixture
def lifecycle_world(request: pytest.FixtureRequest, pg_settings: Settings) -> Any:
    loop = asyncio.new_event_loop()
    stripe = RunningStripe().start()
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    world = World(loop, pg_settings, redis_url, stripe)
    # Events the stand-in owes are kept for the machine to deliver, not sent anywhere.
    stripe.app.deliver_events = world.capture  # type: ignore[method-assign]
    yield world
    stripe.stop()
    loop.close()


# Real time passes in every example; a failure also spends time shrinking.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("lifecycle_world", "examples"), [("redis", 8), ("sql", 4)], indirect=["lifecycle_world"]
)
def test_a_windows_life_keeps_its_invariants(lifecycle_world: World, examples: int) -> None:
    LifecycleModel.world = lifecycle_world
    run_state_machine_as_test(
        LifecycleModel,
        settings=settings(
            max_examples=EXAMPLES or examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(sorted(LifecycleModel.STATS.items()))


async def test_extending_a_window_past_its_deadline_is_409_window_elapsed(
    redis_settings: Settings, stripe: RunningStripe
) -> None:
    """Found by the model: the API answered 400 (the fallback) for WindowElapsed."""
    async with running_api(api_settings(redis_settings, stripe)) as api:
        ends = api.container.clock.now() + timedelta(seconds=1.5)
        opened = await api.open_window(expiresAt=ends.isoformat().replace("+00:00", "Z"))
        deadline = datetime.fromisoformat(opened["expiresAt"].replace("Z", "+00:00"))
        await until_index_time(api.container.index, deadline)

        response = await api.client.post(
            f"/payments/window/{opened['sessionId']}/override",
            json={"action": "extend", "minutes": 1},
            headers=api.admin,
        )

        assert response.status_code == 409, response.text
        assert assert_error_shape(response)["code"] == "window_elapsed"
        async with api.container.uow() as uow:
            session = await uow.sessions.get(opened["sessionId"])
        assert session is not None and (session.status.value, session.version) == ("open", 1)


async def test_a_window_extended_past_its_stripe_session_twice_gets_two_new_sessions(
    redis_settings: Settings, stripe: RunningStripe
) -> None:
    """Found by the model: the second rotation reused the first one's idempotency key, which
    Stripe refuses for other parameters (a 500 internal_error)."""
    async with running_api(api_settings(redis_settings, stripe)) as api:
        opened = await api.open_window(windowMinutes=60)
        seen: set[str] = set()
        for _ in range(2):
            response = await api.client.post(
                f"/payments/window/{opened['sessionId']}/override",
                json={"action": "extend", "minutes": 45},
                headers=api.admin,
            )
            assert response.status_code == 200, response.text
            async with api.container.uow() as uow:
                session = await uow.sessions.get(opened["sessionId"])
            assert session is not None and session.checkout_session_id
            seen.add(session.checkout_session_id)
            assert stripe.session(session.checkout_session_id)["status"] == "open"
        assert len(seen) == 2
