"""In-memory stand-ins for the ports in `payment_window.domain.ports`, as strict as the real ones.

The store keeps committed state apart from each unit of work's staged writes (rolled back unless
committed); a stale version is a VersionConflict, a second unsettled window per auction a
WindowAlreadyOpen. The Stripe stand-in replays the saved answer, a failure included, for a reused
idempotency key, and refuses to expire a session that is not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from payment_window.domain.buyers import (
    UNKNOWN_REASON,
    BuyerRecord,
    OutcomeCount,
    Period,
    RepeatNonPayer,
    UnpaidWindow,
)
from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutSessionMissing,
    InvalidWebhook,
    PaymentProviderUnavailable,
    VersionConflict,
    WindowAlreadyOpen,
)
from payment_window.domain.events import AuditEntry, Destination, OutboxEnvelope, OutboxMessage
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    CheckoutSession,
    CheckoutStatus,
    Claim,
    DeliveryFailed,
    PaymentIntentStatus,
    PaymentStatus,
    UnreadableWindow,
    WindowChange,
    WindowSnapshot,
)
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.views import (
    AWAITING_TOO_LONG,
    DUE_SOON,
    DUPLICATES_SHOWN,
    RECENT,
    AuditRecord,
    FailingMessage,
    Summary,
    WindowFilter,
)

UNSETTLED = (Status.OPEN, Status.AWAITING_PAYMENT_CONFIRMATION)
NEVER = datetime.min.replace(tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


# --- store ----------------------------------------------------------------------------------


@dataclass
class StoredOutbox:
    message: OutboxMessage
    session_id: str | None
    created_at: datetime
    cancelled_at: datetime | None = None


@dataclass
class FakeStore:
    """What the database holds once committed."""

    sessions: dict[str, PaymentSession] = field(default_factory=dict)
    policies: dict[str, ExtensionPolicy] = field(default_factory=dict)
    stripe_events: set[str] = field(default_factory=set)
    checkouts: dict[str, str] = field(default_factory=dict)  # checkout id → session id
    audit: list[AuditEntry] = field(default_factory=list)
    outbox: list[StoredOutbox] = field(default_factory=list)
    locks: dict[str, FakeUnitOfWork] = field(default_factory=dict)
    # Faults: the next `failing_commits` commits fail as a lost database connection would, and
    # the next `failing_reads` batch reads (get_many) too.
    failing_commits: int = 0
    failing_reads: int = 0
    # maker id, actor, before, after
    policy_changes: list[tuple[str, str, ExtensionPolicy | None, ExtensionPolicy]] = field(
        default_factory=list
    )

    def actions(self, session_id: str) -> list[str]:
        return [entry.action for entry in self.audit if entry.session_id == session_id]

    def events(self, session_id: str) -> list[str]:
        return [
            stored.message.event_type
            for stored in self.outbox
            if stored.session_id == session_id and stored.cancelled_at is None
        ]


class FakeSessionRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow
        self._store = uow.store

    def _current(self, session_id: str) -> PaymentSession | None:
        return self._uow.staged.get(session_id) or self._store.sessions.get(session_id)

    def _lock(self, session_id: str) -> bool:
        holder = self._store.locks.get(session_id)
        if holder is not None and holder is not self._uow:
            return False
        self._store.locks[session_id] = self._uow
        return True

    async def get(self, session_id: str, *, for_update: bool = False) -> PaymentSession | None:
        if for_update and not self._lock(session_id):
            raise AssertionError(f"{session_id} is locked by another unit of work (would block)")
        return self._current(session_id)

    async def get_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        if self._store.failing_reads:
            self._store.failing_reads -= 1
            raise ConnectionError("store connection lost during a read")
        return [s for i in session_ids if (s := self._current(i)) is not None]

    async def lock_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        found = [s for i in session_ids if (s := self._current(i)) is not None]
        return [s for s in found if self._lock(s.id)]

    async def existing_ids(self, session_ids: Sequence[str]) -> set[str]:
        return {i for i in session_ids if self._current(i) is not None}

    async def unreadable(self, session_ids: Sequence[str]) -> list[UnreadableWindow]:
        return []

    async def record_expiry_failure(self, session_id: str, error: str) -> int:
        session = self._current(session_id)
        if session is None or (
            session.status not in UNSETTLED and session.expire_checkout_id is None
        ):
            return 0
        attempts = session.expiry_attempts + 1
        self._uow.stage(replace(session, expiry_attempts=attempts, last_expiry_error=error))
        return attempts

    async def overdue_scheduled(self, before: datetime, limit: int) -> list[PaymentSession]:
        due = [s for s in self._store.sessions.values() if s.is_scheduled and s.due_at < before]
        return sorted(due, key=lambda s: s.due_at)[:limit]

    async def record_bookkeeping(self, session: PaymentSession) -> None:
        self._uow.stage(session)

    async def oldest_open_deadline(self) -> datetime | None:
        deadlines = [s.expires_at for s in self._store.sessions.values() if s.is_open]
        return min(deadlines, default=None)

    async def record_reminders(self, sessions: Sequence[PaymentSession]) -> None:
        for session in sessions:
            self._uow.stage(session)

    async def get_by_checkout_session(
        self, checkout_session_id: str, *, for_update: bool = False
    ) -> PaymentSession | None:
        session_id = self._store.checkouts.get(checkout_session_id)
        return None if session_id is None else await self.get(session_id, for_update=for_update)

    async def unsettled_for_auction(self, auction_id: str) -> PaymentSession | None:
        return next(
            (
                s
                for s in self._store.sessions.values()
                if s.auction_id == auction_id and s.status in UNSETTLED
            ),
            None,
        )

    async def paid_for_auction(self, auction_id: str) -> PaymentSession | None:
        return next(
            (
                s
                for s in self._store.sessions.values()
                if s.auction_id == auction_id and s.status is Status.PAID
            ),
            None,
        )

    async def add(self, session: PaymentSession) -> None:
        if session.id in self._store.sessions or session.id in self._uow.staged:
            raise AssertionError(f"session {session.id} already exists")
        if unsettled := await self.unsettled_for_auction(session.auction_id):
            raise WindowAlreadyOpen(session.auction_id, unsettled.id)
        self._uow.stage(session)

    async def update(self, session: PaymentSession) -> None:
        stored = self._current(session.id)
        if stored is None or stored.version != session.version - 1:
            raise VersionConflict(session.id, session.version - 1)
        self._uow.stage(session)


class FakePolicyRepository:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def get(self, maker_id: str) -> ExtensionPolicy | None:
        return self._store.policies.get(maker_id)

    async def put(self, maker_id: str, policy: ExtensionPolicy, now: datetime) -> None:
        self._store.policies[maker_id] = policy

    async def record_change(
        self,
        maker_id: str,
        actor: str,
        before: ExtensionPolicy | None,
        after: ExtensionPolicy,
        at: datetime,
    ) -> None:
        self._store.policy_changes.append((maker_id, actor, before, after))


class FakeStripeEventRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, event_id: str, event_type: str, received_at: datetime) -> bool:
        if event_id in self._uow.store.stripe_events or event_id in self._uow.events:
            return False
        self._uow.events.add(event_id)
        return True


class FakeUnitOfWork:
    """One transaction: staged writes reach the store only on `commit`."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.staged: dict[str, PaymentSession] = {}
        self.events: set[str] = set()
        self._audit: list[AuditEntry] = []
        self._outbox: list[StoredOutbox] = []
        self._cancel: list[tuple[str, Collection[str], datetime]] = []
        self.committed = False

    @property
    def sessions(self) -> FakeSessionRepository:
        return FakeSessionRepository(self)

    @property
    def policies(self) -> FakePolicyRepository:
        return FakePolicyRepository(self.store)

    @property
    def stripe_events(self) -> FakeStripeEventRepository:
        return FakeStripeEventRepository(self)

    def stage(self, session: PaymentSession) -> None:
        self.staged[session.id] = session

    async def cancel_pending(
        self, session_id: str, event_types: Collection[str], now: datetime
    ) -> int:
        self._cancel.append((session_id, event_types, now))
        return sum(
            1
            for stored in self.store.outbox
            if stored.session_id == session_id
            and stored.message.event_type in event_types
            and stored.cancelled_at is None
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for session_id, holder in list(self.store.locks.items()):
            if holder is self:
                del self.store.locks[session_id]

    def record(self, audit: AuditEntry, messages: Sequence[OutboxMessage] = ()) -> None:
        self._audit.append(audit)
        self._outbox.extend(StoredOutbox(m, audit.session_id, audit.at) for m in messages)

    async def commit(self) -> None:
        if self.store.failing_commits:
            self.store.failing_commits -= 1
            raise ConnectionError("store connection lost during commit")
        for session_id, event_types, now in self._cancel:
            for stored in self.store.outbox:
                if (
                    stored.session_id == session_id
                    and stored.message.event_type in event_types
                    and stored.cancelled_at is None
                ):
                    stored.cancelled_at = now
        for session in self.staged.values():
            self.store.sessions[session.id] = session
            if session.checkout_session_id:
                self.store.checkouts[session.checkout_session_id] = session.id
        self.store.stripe_events |= self.events
        self.store.audit += self._audit
        self.store.outbox += self._outbox
        self.staged, self.events, self._audit, self._outbox, self._cancel = {}, set(), [], [], []
        self.committed = True


class FakeUnitOfWorkFactory:
    def __init__(self, store: FakeStore | None = None) -> None:
        self.store = store or FakeStore()

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store)


# --- window index ---------------------------------------------------------------------------


class FakeIndex:
    """Snapshots, a schedule of due moments, and claims with leases, on the given clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.entries: dict[str, PaymentSession] = {}
        self.schedule: dict[str, datetime] = {}
        self.claims: dict[str, datetime] = {}  # session id → lease end
        self.wakes = 0
        self.lost = False
        # Faults: while `down`, every write and read fails as an unreachable Redis would.
        self.down = False
        self.failing_settles = 0  # the next n settle_many calls fail (the index went away)
        self._woken = asyncio.Event()

    def _reachable(self) -> None:
        if self.down:
            raise ConnectionError("index unreachable")

    async def now(self) -> datetime:
        return self._clock.now()

    async def put(self, session: PaymentSession) -> None:
        self._reachable()
        self.entries[session.id] = session
        self.claims.pop(session.id, None)
        if session.is_scheduled:
            self.schedule[session.id] = session.due_at
        else:
            self.schedule.pop(session.id, None)

    async def snapshot(self, session_id: str) -> WindowSnapshot | None:
        self._reachable()
        s = self.entries.get(session_id)
        if s is None:
            return None
        return WindowSnapshot(
            session_id=s.id,
            auction_id=s.auction_id,
            maker_id=s.maker_id,
            buyer_id=s.buyer_id,
            amount=s.amount,
            currency=s.currency,
            status=s.status,
            expires_at=s.expires_at,
            version=s.version,
            reason=s.reason,
            checkout_url=s.checkout_url,
        )

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        now = self._clock.now()
        free = [
            (due, session_id)
            for session_id, due in self.schedule.items()
            if due <= now and self.claims.get(session_id, now) <= now
        ]
        taken = sorted(free)[:limit]
        for _, session_id in taken:
            self.claims[session_id] = now + timedelta(seconds=lease_seconds)
        return [Claim(session_id, due) for due, session_id in taken]

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        self._reachable()
        self.claims.pop(session_id, None)
        self.schedule[session_id] = due_at

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        if self.failing_settles:
            self.failing_settles -= 1
            raise ConnectionError("the index went away")
        for session in sessions:
            await self.put(session)

    async def next_due(self) -> datetime | None:
        return min(self.schedule.values(), default=None)

    async def pending_count(self) -> int:
        return len(self.schedule)

    async def scheduled_ids(self) -> set[str]:
        return set(self.schedule)

    async def forget(self, session_id: str) -> None:
        self.entries.pop(session_id, None)
        self.schedule.pop(session_id, None)
        self.claims.pop(session_id, None)

    async def wake(self) -> None:
        self._reachable()
        self.wakes += 1
        self._woken.set()

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        self._woken.clear()

    async def needs_rebuild(self) -> bool:
        return self.lost

    async def mark_rebuilt(self) -> None:
        self.lost = False

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# --- Stripe ---------------------------------------------------------------------------------


WEBHOOK_SECRET = b"whsec_fake"


@dataclass
class _Saved:
    request: tuple[Any, ...]
    answer: CheckoutSession | None = None
    error: Exception | None = None


class FakeStripe:
    """Checkout Sessions in memory. A reused idempotency key gets the first answer again (a
    failure included), as Stripe does; with other parameters it is refused."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.sessions: dict[str, CheckoutSession] = {}
        self.saved: dict[str, _Saved] = {}
        self.keys: list[str] = []
        self._failures: list[Exception] = []
        self._expire_failures: list[Exception] = []
        self._ids = itertools.count(1)

    # test controls
    def fail_next(self, count: int = 1, kind: str = "server_error") -> None:
        self._failures += [PaymentProviderUnavailable("Stripe answered 500", kind)] * count

    def fail_next_expire(self, count: int = 1) -> None:
        """The next `count` expire calls fail (creates and retrieves still answer)."""
        self._expire_failures += [PaymentProviderUnavailable("Stripe answered 500")] * count

    def pay(self, checkout_session_id: str) -> None:
        """The buyer completes checkout and pays."""
        self.sessions[checkout_session_id] = replace(
            self.sessions[checkout_session_id],
            status=CheckoutStatus.COMPLETE,
            payment_status=PaymentStatus.PAID,
        )

    def pay_later(self, checkout_session_id: str) -> None:
        """The buyer completes checkout with a delayed method (a bank debit): not paid yet."""
        self.sessions[checkout_session_id] = replace(
            self.sessions[checkout_session_id],
            status=CheckoutStatus.COMPLETE,
            payment_status=PaymentStatus.UNPAID,
            payment_intent_status=PaymentIntentStatus.PROCESSING,
        )

    def payment_fails(self, checkout_session_id: str) -> None:
        """The delayed payment of a completed checkout failed."""
        self.sessions[checkout_session_id] = replace(
            self.sessions[checkout_session_id],
            payment_intent_status=PaymentIntentStatus.REQUIRES_PAYMENT_METHOD,
        )

    def expire_by_itself(self, checkout_session_id: str) -> None:
        """Stripe ends the session on its own (its `expires_at` passed, or it gave up)."""
        self.sessions[checkout_session_id] = replace(
            self.sessions[checkout_session_id], status=CheckoutStatus.EXPIRED
        )

    def lose(self, checkout_session_id: str) -> None:
        """Stripe no longer knows the session (`resource_missing`)."""
        del self.sessions[checkout_session_id]

    def _call(self, key: str, request: tuple[Any, ...], act: Any) -> CheckoutSession:
        self.keys.append(key)
        saved = self.saved.get(key)
        if saved is None:
            saved = self.saved[key] = _Saved(request)
            if self._failures:
                saved.error = self._failures.pop(0)
            else:
                try:
                    saved.answer = act()
                except CheckoutNotOpen as refused:
                    saved.error = refused
        elif saved.request != request:
            raise AssertionError(f"idempotency key {key} reused with other parameters")
        if saved.error is not None:
            raise saved.error
        assert saved.answer is not None
        return saved.answer

    # the port
    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        def act() -> CheckoutSession:
            checkout_id = f"cs_test_{next(self._ids)}"
            created = CheckoutSession(
                id=checkout_id,
                url=f"https://checkout.test/{checkout_id}",
                status=CheckoutStatus.OPEN,
                payment_status=PaymentStatus.UNPAID,
                expires_at=expires_at,
            )
            self.sessions[checkout_id] = created
            return created

        request = ("create", session.id, session.amount, session.currency, expires_at)
        return self._call(idempotency_key, request, act)

    async def retrieve(
        self, checkout_session_id: str, *, account: str | None = None
    ) -> CheckoutSession:
        if checkout_session_id not in self.sessions:
            raise CheckoutSessionMissing(checkout_session_id)
        return self.sessions[checkout_session_id]

    async def expire(
        self, checkout_session_id: str, idempotency_key: str, *, account: str | None = None
    ) -> CheckoutSession:
        def act() -> CheckoutSession:
            current = self.sessions[checkout_session_id]
            if current.status != "open":
                raise CheckoutNotOpen(checkout_session_id, current.status)
            expired = replace(current, status=CheckoutStatus.EXPIRED)
            self.sessions[checkout_session_id] = expired
            return expired

        if checkout_session_id not in self.sessions:
            self.keys.append(idempotency_key)
            raise CheckoutSessionMissing(checkout_session_id)
        if self._expire_failures and idempotency_key not in self.saved:
            self._failures.insert(0, self._expire_failures.pop(0))
        return self._call(idempotency_key, ("expire", checkout_session_id), act)

    def parse_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        if signature is None or not hmac.compare_digest(signature, sign(payload)):
            raise InvalidWebhook("bad signature")
        event: dict[str, Any] = json.loads(payload)
        return event

    def event(self, event_id: str, event_type: str, checkout_session_id: str) -> bytes:
        """A Checkout Session event as Stripe would send it, with the session as it stands."""
        checkout = self.sessions[checkout_session_id]
        obj = {
            "id": checkout.id,
            "url": checkout.url,
            "status": checkout.status,
            "payment_status": checkout.payment_status,
            "expires_at": int(checkout.expires_at.timestamp()),
        }
        return json.dumps({"id": event_id, "type": event_type, "data": {"object": obj}}).encode()


def sign(payload: bytes) -> str:
    return hmac.new(WEBHOOK_SECRET, payload, hashlib.sha256).hexdigest()


# --- the rest -------------------------------------------------------------------------------


class FakeChangeFeed:
    def __init__(self) -> None:
        self.published: list[WindowChange] = []
        self.down = False

    async def publish(self, change: WindowChange) -> None:
        if self.down:
            raise ConnectionError("live event channel unreachable")
        self.published.append(change)


class FakeMetrics:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        self.distributions: dict[str, list[float]] = {}

    def increment(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def gauge(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        self.gauges[name] = value

    def distribution(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        self.distributions.setdefault(name, []).append(value)

    def close(self) -> None:
        return None


class FakeRateLimiter:
    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1


# --- outbox ---------------------------------------------------------------------------------


@dataclass
class _Row:
    envelope: OutboxEnvelope
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None
    parked_at: datetime | None = None


class FakeOutboxStore:
    """Outbox rows with leases, as the relay sees them."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}

    def add(self, envelope: OutboxEnvelope) -> None:
        self.rows[envelope.id] = _Row(envelope, envelope.created_at)

    async def claim(
        self, destinations: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxEnvelope]:
        due = [
            row
            for row in self.rows.values()
            if row.delivered_at is None
            and row.parked_at is None
            and row.next_attempt_at <= now
            and row.envelope.destination in destinations
        ]
        due.sort(key=lambda row: (row.next_attempt_at, row.envelope.created_at))
        for row in due[:limit]:
            row.next_attempt_at = now + lease
        return [row.envelope for row in due[:limit]]

    async def mark_delivered(self, message_id: str, at: datetime) -> None:
        row = self.rows[message_id]
        row.delivered_at = row.delivered_at or at

    async def mark_failed(self, message_id: str, error: str, retry_at: datetime) -> None:
        row = self.rows[message_id]
        if row.delivered_at is None:
            row.envelope = replace(row.envelope, attempts=row.envelope.attempts + 1)
            row.last_error, row.next_attempt_at = error, retry_at

    async def park(self, message_id: str, error: str, at: datetime) -> None:
        row = self.rows[message_id]
        if row.delivered_at is None:
            row.envelope = replace(row.envelope, attempts=row.envelope.attempts + 1)
            row.last_error, row.parked_at = error, at

    async def redeliver(self, message_id: str, now: datetime) -> bool:
        row = self.rows.get(message_id)
        if row is None or row.delivered_at is not None:
            return False
        row.parked_at, row.next_attempt_at = None, now
        return True

    async def undelivered_counts(self) -> dict[str, int]:
        counts = {destination.value: 0 for destination in Destination}
        for row in self.rows.values():
            if row.delivered_at is None:
                name = str(row.envelope.destination)
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def failing(self, limit: int) -> list[FailingMessage]:
        failing = [
            row for row in self.rows.values() if row.delivered_at is None and row.envelope.attempts
        ]
        failing.sort(key=lambda row: (-row.envelope.attempts, row.envelope.created_at))
        return [
            FailingMessage(
                id=row.envelope.id,
                session_id=row.envelope.session_id,
                destination=str(row.envelope.destination),
                event_type=row.envelope.event_type,
                attempts=row.envelope.attempts,
                last_error=row.last_error,
                next_attempt_at=row.next_attempt_at,
                created_at=row.envelope.created_at,
                parked_at=row.parked_at,
            )
            for row in failing[:limit]
        ]


class FakeSink:
    """Delivers into a list; `down` makes every delivery fail as a vendor outage would."""

    def __init__(self) -> None:
        self.delivered: list[OutboxEnvelope] = []
        self.down = False

    async def deliver(self, message: OutboxEnvelope) -> None:
        if self.down:
            raise DeliveryFailed("vendor unreachable")
        self.delivered.append(message)


# --- operations read model ------------------------------------------------------------------


class FakeReadModel:
    """The operations queries over the fake store's committed state, as the SQL read model
    answers them (`adapters/read_model.py`): the same filters, order, keyset and figures."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def _all(self) -> list[PaymentSession]:
        return list(self._store.sessions.values())

    async def windows(
        self, query: WindowFilter, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[PaymentSession]:
        def matches(s: PaymentSession) -> bool:
            return (
                (query.status is None or s.status is query.status)
                and (query.maker_id is None or s.maker_id == query.maker_id)
                and (query.buyer_id is None or s.buyer_id == query.buyer_id)
                and (query.auction_id is None or s.auction_id == query.auction_id)
                and (query.due_before is None or s.expires_at < query.due_before)
                and (query.due_after is None or s.expires_at >= query.due_after)
                and (not query.overdue or (s.status is Status.OPEN and s.expires_at < now))
                and (after is None or (s.expires_at, s.id) > after)
            )

        return sorted(filter(matches, self._all()), key=lambda s: (s.expires_at, s.id))[:limit]

    async def summary(self, now: datetime) -> Summary:
        opened = [s for s in self._all() if s.status is Status.OPEN]
        overdue = [s.expires_at for s in opened if s.expires_at < now]
        reasons: dict[str, int] = {}
        for s in self._all():
            if s.status is Status.EXPIRED and s.expired_at and s.expired_at >= now - RECENT:
                key = s.reason or UNKNOWN_REASON
                reasons[key] = reasons.get(key, 0) + 1
        return Summary(
            server_time=now,
            open_count=len(opened),
            due_within_hour=sum(1 for s in opened if now <= s.expires_at < now + DUE_SOON),
            overdue_count=len(overdue),
            oldest_overdue_seconds=int((now - min(overdue)).total_seconds()) if overdue else None,
            failing_at_stripe=sum(1 for s in opened if s.expiry_attempts > 0),
            awaiting_confirmation_over_day=sum(
                1
                for s in self._all()
                if s.status is Status.AWAITING_PAYMENT_CONFIRMATION
                and s.updated_at < now - AWAITING_TOO_LONG
            ),
            duplicate_payments=sum(
                1
                for entry in self._store.audit
                if entry.action == "duplicate_payment_detected"
                and entry.at >= now - DUPLICATES_SHOWN
            ),
            undelivered_outbox=sum(1 for row in self._store.outbox if row.cancelled_at is None),
            expired_last_24h_by_reason=dict(sorted(reasons.items())),
        )

    def _opened_in(self, period: Period) -> list[PaymentSession]:
        return [s for s in self._all() if s.created_at >= period.since]

    async def buyer_record(self, buyer_id: str, period: Period) -> BuyerRecord:
        mine = [s for s in self._opened_in(period) if s.buyer_id == buyer_id]
        counts: dict[tuple[Status, str | None], int] = {}
        for s in mine:
            counts[(s.status, s.reason)] = counts.get((s.status, s.reason), 0) + 1
        unpaid = [s for s in mine if s.status is Status.EXPIRED]
        # The SQL's order: expired_at descending, nulls last, then id descending.
        unpaid.sort(key=lambda s: (s.expired_at is not None, s.expired_at or NEVER, s.id))
        last = unpaid[-1] if unpaid else None
        return BuyerRecord.of(
            buyer_id,
            period,
            [OutcomeCount(status, reason, n) for (status, reason), n in counts.items()],
            None
            if last is None
            else UnpaidWindow(
                session_id=last.id,
                auction_id=last.auction_id,
                closed_at=last.expired_at or last.updated_at,
                reason=last.reason or UNKNOWN_REASON,
            ),
        )

    async def repeat_non_payers(self, period: Period, limit: int) -> list[RepeatNonPayer]:
        in_period = self._opened_in(period)
        unpaid: dict[str, int] = {}
        for s in in_period:
            if s.status is Status.EXPIRED:
                unpaid[s.buyer_id] = unpaid.get(s.buyer_id, 0) + 1
        ranked = sorted(unpaid.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [
            RepeatNonPayer(buyer, unpaid=n, opened=sum(1 for s in in_period if s.buyer_id == buyer))
            for buyer, n in ranked
        ]

    async def session(self, session_id: str) -> PaymentSession | None:
        return self._store.sessions.get(session_id)

    async def audit_trail(self, session_id: str) -> list[AuditRecord]:
        return [
            AuditRecord(
                id=number,
                action=entry.action,
                actor=entry.actor,
                from_status=entry.from_status,
                to_status=entry.to_status,
                details=dict(entry.details),
                at=entry.at,
            )
            for number, entry in enumerate(self._store.audit, start=1)
            if entry.session_id == session_id
        ]

    async def unsettled_count(self) -> int:
        return sum(1 for s in self._all() if s.status in UNSETTLED)

    async def unsettled_after(self, last_id: str, limit: int) -> list[PaymentSession]:
        unsettled = [s for s in self._all() if s.status in UNSETTLED and s.id > last_id]
        return sorted(unsettled, key=lambda s: s.id)[:limit]

    async def sessions(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        return [self._store.sessions[i] for i in session_ids if i in self._store.sessions]
