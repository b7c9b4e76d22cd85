"""The expiry task: close every overdue window exactly once, through crashes and Stripe faults.

A pass claims due windows from the index (a claim is a lease: a worker killed mid-way loses
nothing, its claims come back when the lease ends). Stripe's budget is spent in deadline order,
so in a burst the k-th window closes about k / budget after the deadline. Windows whose turns
come together are taken on as a group: reminders and policies are read and recorded once per
group, and the index is settled once per group; each due window is closed in its own transaction
under its own row lock with its one Stripe call (bounded, not retried inside the lock), so no
window ever waits on another window's Stripe call. The same pass sends due buyer reminders,
replaces the Stripe session of a window that outlives it, and asks Stripe again about payments
still awaiting confirmation. Every Stripe call of the pass is a background call of the
deployment's budget; the slot of each window's locked call is taken before its row is locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from payment_window.domain import access, messages, stripe_calls
from payment_window.domain.errors import CheckoutSessionMissing, PaymentProviderUnavailable
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    CheckoutSession,
    Claim,
    RateLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
    WindowIndex,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.transitions import PAID, Transitions

log = structlog.get_logger(__name__)

ACTOR = access.SYSTEM_EXPIRY
MAX_BACKOFF = timedelta(minutes=5)
# How long past its due moment a window may sit unindexed before the sweep re-indexes it; the
# grace keeps the sweep out of the way of a worker that is about to act on it anyway.
SWEEP_GRACE = timedelta(seconds=10)
BUSY_RETRY = timedelta(seconds=1)
# Windows in hand at once; each waits for its own turn in Stripe's budget.
IN_FLIGHT = 64
# A group is sent when full, or this long after its first window's turn came: long enough for a
# busy worker to gather windows (at 2 ms groups stayed near one window and a worker closed
# ~150/s; at 20 ms ~340/s), short beside the 1 s a burst may add to the k-th window's floor.
GROUP_MAX = 32
GROUP_WAIT_SECONDS = 0.02
INDEX_CONCURRENCY = 64
# Due windows being closed at once by one worker, each holding a store connection (and its row)
# for its one Stripe call: well within the connection pool.
CLOSE_CONCURRENCY = 16


@dataclass
class PassReport:
    """What one pass did, for the CLI, the Lambda's response and the logs."""

    claimed: int = 0
    expired: int = 0
    paid: int = 0
    rescheduled: int = 0
    rotated: int = 0
    reminded: int = 0
    rechecked: int = 0
    retried: int = 0
    dropped: int = 0
    reindexed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stripe_backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter, so a Stripe outage is not met with a synchronized storm."""
    base = min(MAX_BACKOFF.total_seconds(), 2.0 ** min(attempts, 10))
    return timedelta(seconds=base * random.uniform(0.5, 1.0))


T = TypeVar("T")


class ExpiryTask:
    """Claims due windows and acts on each; safe with any number of workers at once."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        transitions: Transitions,
        index: WindowIndex,
        budget: RateLimiter,
        batch_size: int,
        lease_seconds: float,
        reminder_offsets: tuple[int, ...] = (),
        rebuild: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._index = index
        self._budget = budget
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._reminder_offsets = reminder_offsets
        self._rebuild = rebuild
        self._stopping = asyncio.Event()
        self._closing = asyncio.Semaphore(CLOSE_CONCURRENCY)

    def stop(self) -> None:
        """Finish the windows in hand, give the rest of the claims back, and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_stopping(self, seconds: float) -> None:
        """Return once a stop is asked, or after `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_pass(self, *, sweep: bool = False) -> PassReport:
        """Claim and act on due windows until none is due (or a stop is asked)."""
        structlog.contextvars.bind_contextvars(correlation_id=f"expiry-{uuid.uuid4().hex[:16]}")
        report = PassReport()
        if self._rebuild is not None and await self._index.needs_rebuild():
            log.warning("window_index_rebuilding", why="the index lost its contents")
            report.reindexed = await self._rebuild()
        elif sweep:
            report.reindexed = await self.sweep_store()
        while not self.stopping:
            claims = await self._index.claim_due(self._batch_size, self._lease_seconds)
            if not claims:
                break
            report.claimed += len(claims)
            await self.close_claims(claims, report)
        return report

    async def close_claims(
        self, claims: Sequence[Claim], report: PassReport | None = None
    ) -> PassReport:
        """Act on claimed windows in deadline order, each as soon as Stripe's budget allows."""
        if report is None:
            report = PassReport(claimed=len(claims))
        with stripe_calls.background():
            return await self._close_claims(claims, report)

    async def _close_claims(self, claims: Sequence[Claim], report: PassReport) -> PassReport:
        claims = sorted(claims, key=lambda claim: claim.due_at)
        async with self._uow() as uow:
            found = {s.id: s for s in await uow.sessions.get_many([c.session_id for c in claims])}
        now = await self._index.now()
        in_flight = asyncio.Semaphore(IN_FLIGHT)
        tasks: list[asyncio.Task[None]] = []
        group: list[str] = []
        timer: asyncio.TimerHandle | None = None

        def send_group() -> None:
            nonlocal group, timer
            if timer is not None:
                timer.cancel()
                timer = None
            if not group:
                return
            ids, group = group, []
            task = asyncio.create_task(self._act_guarded(ids, report))
            task.add_done_callback(lambda _: _release(in_flight, len(ids)))
            tasks.append(task)

        for claim in claims:
            session = found.get(claim.session_id)
            if session is None:
                await self._index.forget(claim.session_id)
                report.dropped += 1
                continue
            if self.stopping:
                await self._index.retry_at(claim.session_id, claim.due_at)
                continue
            await in_flight.acquire()
            if session.is_due(now):
                # The turn of the one call made under the row lock is taken before the row is
                # locked: waiting holds no lock. (Calls made without a lock take theirs at the
                # gateway.)
                await self._budget.acquire()
            group.append(claim.session_id)
            if len(group) >= GROUP_MAX:
                send_group()
            elif timer is None:
                timer = asyncio.get_running_loop().call_later(GROUP_WAIT_SECONDS, send_group)
        send_group()
        await asyncio.gather(*tasks)
        return report

    async def sweep_store(self) -> int:
        """Re-index scheduled windows whose due moment passed without the index holding them
        (a lost Redis key, a crash between commit and index update): the backstop."""
        now = await self._index.now()
        async with self._uow() as uow:
            overdue = await uow.sessions.overdue_scheduled(now - SWEEP_GRACE, 10_000)
        scheduled = await self._index.scheduled_ids() if overdue else set()
        missing = [session for session in overdue if session.id not in scheduled]
        await _each(missing, self._index.put)
        if missing:
            log.warning("reindexed_overdue_windows", count=len(missing))
        return len(missing)

    async def oldest_open_deadline(self) -> datetime | None:
        """The earliest deadline of any open window (for the overdue gauge)."""
        async with self._uow() as uow:
            return await uow.sessions.oldest_open_deadline()

    # --- a group of windows ---------------------------------------------------------------------

    async def _act_guarded(self, session_ids: list[str], report: PassReport) -> None:
        try:
            await self._act(session_ids, report)
        except Exception as error:
            # The group's transaction failed (the store): every window counts an attempt and
            # comes back. Stripe calls already made are safe to repeat (idempotent, or "expired").
            for session_id in session_ids:
                structlog.contextvars.bind_contextvars(session_id=session_id)
                await self._failed(session_id, error, report)

    async def _act(self, session_ids: list[str], report: PassReport) -> None:
        now = await self._index.now()
        stripe_failed: dict[str, Exception] = {}
        changed: list[PaymentSession] = []
        # The group's bookkeeping (reminders, policies): one short transaction, no Stripe call.
        async with self._uow() as uow:
            locked = await uow.sessions.lock_many(session_ids)
            held = {session.id for session in locked}
            for session_id in session_ids:
                if session_id not in held:
                    await self._not_locked(uow, session_id, now, report)
            due = [session for session in locked if session.is_due(now)]
            policies = {
                maker_id: await self._t.policy_for(uow, maker_id)
                for maker_id in {session.maker_id for session in due}
            }
            reminded = [
                self._remind(uow, session, now)
                for session in locked
                if not session.is_due(now) and session.reminder_due(now)
            ]
            if reminded:
                await uow.sessions.record_reminders(reminded)
                report.reminded += len(reminded)
                await uow.commit()
        # Each due window in its own transaction, under its own row lock, with its one Stripe
        # call, side by side: a slow or hung call holds its own row only.
        outcomes = await asyncio.gather(
            *(
                self._close_due(session.id, now, policies[session.maker_id], report)
                for session in due
            ),
            return_exceptions=True,
        )
        moved: list[PaymentSession] = []
        for session, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):
                stripe_failed[session.id] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome is None:
                continue  # held by another transaction: looked at again shortly
            elif outcome[0]:
                changed.append(outcome[1])
            else:
                moved.append(outcome[1])
        if moved:
            # Closed or extended by someone else meanwhile: back on the schedule as it stands.
            await self._index.settle_many(moved)
            report.rescheduled += len(moved)
        if changed:
            await self._index.settle_many(changed)
        for closed in changed:
            structlog.contextvars.bind_contextvars(session_id=closed.id)
            await self._t.announce_closed(closed, reindex=False)
            if closed.status is Status.EXPIRED:
                report.expired += 1
            else:
                report.paid += 1
        for session_id, error in stripe_failed.items():
            structlog.contextvars.bind_contextvars(session_id=session_id)
            await self._failed(session_id, error, report)
        reminded_by_id = {session.id: session for session in reminded}
        on_schedule: list[PaymentSession] = []
        for session in locked:
            if session.is_due(now):
                continue
            current = reminded_by_id.get(session.id, session)
            structlog.contextvars.bind_contextvars(session_id=current.id)
            if current.needs_new_checkout(now):
                await self._replace_checkout(current, report)
            elif current.confirmation_check_due(now):
                await self._recheck_confirmation(current, report)
            else:
                # Extended meanwhile, reminded, or not due yet: back on the schedule as it stands.
                on_schedule.append(current)
                report.rescheduled += 1
        if on_schedule:
            await self._index.settle_many(on_schedule)

    async def _close_due(
        self, session_id: str, now: datetime, policy: ExtensionPolicy, report: PassReport
    ) -> tuple[bool, PaymentSession] | None:
        """Close one due window: lock its row, Stripe first (one bounded call, its budget slot
        taken before the lock), record. (True, closed) once recorded; (False, as it stands) when
        it moved meanwhile; None when another transaction holds it. Its own task, so its log
        lines carry its window."""
        structlog.contextvars.bind_contextvars(session_id=session_id)
        async with self._closing, self._uow() as uow:
            locked = await uow.sessions.lock_many([session_id])
            if not locked:
                await self._not_locked(uow, session_id, now, report)
                return None
            session = locked[0]
            if not session.is_due(now):
                return False, session
            try:
                with stripe_calls.under_row_lock(prepaid=True):
                    answer = await self._t.expire_at_stripe(session)
            except CheckoutSessionMissing:
                closed = self._t.close_missing_checkout(uow, session, policy, ACTOR)
            else:
                if answer is not None:
                    closed = self._t.apply_payment(uow, session, answer, ACTOR)
                else:
                    closed = self._t.close(uow, session, policy, CloseReason.WINDOW_ELAPSED, ACTOR)
            await uow.sessions.update(closed)
            await uow.commit()
        return True, closed

    async def _not_locked(
        self, uow: UnitOfWork, session_id: str, now: datetime, report: PassReport
    ) -> None:
        if await uow.sessions.existing_ids([session_id]):
            # Another transaction holds it (an extension, a webhook): look again shortly.
            await self._index.retry_at(session_id, now + BUSY_RETRY)
            report.rescheduled += 1
        else:
            await self._index.forget(session_id)
            report.dropped += 1

    def _remind(self, uow: UnitOfWork, session: PaymentSession, now: datetime) -> PaymentSession:
        """Queue the buyer reminder that came due; the row lock makes it go out once."""
        reminded, offset = session.send_reminder(self._reminder_offsets, now)
        uow.record(
            self._t.audit(
                reminded,
                "reminder_sent",
                ACTOR,
                session.status,
                {"reminderMinutes": offset, "expiresAt": messages.iso(session.expires_at)},
            ),
            [messages.on_reminder(reminded, offset, now)],
        )
        return reminded

    async def _replace_checkout(self, session: PaymentSession, report: PassReport) -> None:
        """A window longer than one Stripe session gets a new one before the old runs out. The
        new one is made without holding the row; it is attached only if nothing moved."""
        now = self._t.clock.now()
        checkout = await self._t.create_checkout(
            session, session.expires_at, f"rotate:{session.stripe_attempt_key}:v{session.version}"
        )
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            attach = (
                current is not None
                and current.version == session.version
                and current.needs_new_checkout(await self._index.now())
            )
            if current is not None and attach:
                rotated = current.with_checkout(
                    checkout.id, checkout.url or "", checkout.expires_at, now
                )
                uow.record(
                    self._t.audit(
                        rotated,
                        "checkout_rotated",
                        ACTOR,
                        current.status,
                        {
                            "previousCheckoutSessionId": current.checkout_session_id,
                            "checkoutSessionId": rotated.checkout_session_id,
                            "checkoutExpiresAt": messages.iso(rotated.checkout_expires_at),
                        },
                    )
                )
                await uow.sessions.update(rotated)
                await uow.commit()
        if not attach or current is None:
            # The window moved on meanwhile: nobody has this session's link.
            await self._t.expire_quietly(checkout.id, f"unused:{checkout.id}")
            if current is not None:
                await self._index.settle_many([current])
            return
        await self._index.settle_many([rotated])
        await self._t.announce(rotated, "rotated", reindex=False)
        report.rotated += 1
        if current.checkout_session_id:
            await self._t.expire_quietly(
                current.checkout_session_id, f"rotated:{current.checkout_session_id}"
            )

    async def _recheck_confirmation(self, session: PaymentSession, report: PassReport) -> None:
        """No webhook settled a pending payment: ask Stripe and settle from its answer."""
        checkout_id = session.checkout_session_id
        checkout = await self._t.gateway.retrieve(checkout_id) if checkout_id else None
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            if current is None or not current.confirmation_check_due(await self._index.now()):
                changed = current
            elif checkout is not None and checkout.payment_status in PAID:
                changed = self._t.apply_payment(uow, current, checkout, ACTOR)
                await uow.sessions.update(changed)
            elif checkout is None or checkout.status == "expired" or _payment_failed(checkout):
                policy = await self._t.policy_for(uow, current.maker_id)
                changed = self._t.close(uow, current, policy, CloseReason.PAYMENT_FAILED, ACTOR)
                await uow.sessions.update(changed)
            else:
                changed = current.still_awaiting(self._t.clock.now(), self._t.confirmation_recheck)
                await uow.sessions.record_bookkeeping(changed)
            await uow.commit()
        report.rechecked += 1
        if changed is None:
            await self._index.forget(session.id)
            return
        await self._index.settle_many([changed])
        if changed.version != session.version:
            await self._t.announce_closed(changed, reindex=False)

    async def _failed(self, session_id: str, error: Exception, report: PassReport) -> None:
        kind = error.kind if isinstance(error, PaymentProviderUnavailable) else "other"
        self._t.metrics.increment("payments.window.stripe_errors", tags=[f"kind:{kind}"])
        try:
            async with self._uow() as uow:
                attempts = await uow.sessions.record_expiry_failure(
                    session_id, f"{type(error).__name__}: {error}"
                )
                await uow.commit()
        except Exception as unrecorded:
            # The next attempt may carry this attempt's idempotency key again (Stripe would
            # replay its answer): said, counted, and backed off by the attempts the store has.
            self._t.metrics.increment(
                "payments.window.expiry_failures_unrecorded", tags=["step:record"]
            )
            log.error(
                "expiry_failure_not_recorded",
                session_id=session_id,
                error=f"{type(error).__name__}: {error}",
                store_error=repr(unrecorded),
            )
            attempts = await self._attempts_so_far(session_id)
        delay = stripe_backoff(attempts)
        try:
            await self._index.retry_at(session_id, await self._index.now() + delay)
        except Exception:
            self._t.metrics.increment(
                "payments.window.expiry_failures_unrecorded", tags=["step:schedule"]
            )
            log.warning("expiry_retry_not_scheduled", session_id=session_id, exc_info=True)
        report.retried += 1
        log.warning(
            "expiry_retry_scheduled",
            error=f"{type(error).__name__}: {error}",
            attempts=attempts,
            retry_in_seconds=round(delay.total_seconds(), 1),
        )

    async def _attempts_so_far(self, session_id: str) -> int:
        """The failed attempts the store holds for the window, counting this one."""
        try:
            async with self._uow() as uow:
                session = await uow.sessions.get(session_id)
        except Exception as unreadable:
            log.error("expiry_attempts_unreadable", session_id=session_id, error=repr(unreadable))
            return 1
        return (session.expiry_attempts if session is not None else 0) + 1


def _release(semaphore: asyncio.Semaphore, times: int) -> None:
    for _ in range(times):
        semaphore.release()


def _payment_failed(checkout: CheckoutSession) -> bool:
    return checkout.payment_intent_status in ("requires_payment_method", "canceled")


async def _each(items: Sequence[T], action: Callable[[T], Awaitable[object]]) -> None:
    """Run `action` over `items` concurrently, a bounded number at a time."""
    for start in range(0, len(items), INDEX_CONCURRENCY):
        await asyncio.gather(*(action(item) for item in items[start : start + INDEX_CONCURRENCY]))
