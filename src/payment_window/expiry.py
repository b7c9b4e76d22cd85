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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from payment_window.backoff import backoff_delay
from payment_window.concurrency import each
from payment_window.domain import access, messages, stripe_calls
from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutSessionMissing,
    PaymentProviderUnavailable,
)
from payment_window.domain.events import AuditEntry
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    CheckoutSession,
    Claim,
    RateLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
    UnreadableWindow,
    WindowIndex,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.transitions import PAID, Transitions

log = structlog.get_logger(__name__)

ACTOR = access.SYSTEM_EXPIRY
# A window whose Stripe call failed is tried again 2 s later, doubling up to 5 minutes, so a
# Stripe outage is not met with a synchronized storm.
STRIPE_RETRY_FIRST = timedelta(seconds=2)
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
# for its one Stripe call: few, since every worker process of a deployment holds as many at
# once (8 workers at 16 each exhausted a 100-connection PostgreSQL).
CLOSE_CONCURRENCY = 4


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
    set_aside: int = 0
    expired_other: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
        # Every claim is handed on (to a group, or given back) or, on any failure before that
        # (the store or the index failing mid-pass), given back at once: a claim is never left
        # to its lease, and the worker's loop backs off before it claims again.
        handed: set[str] = set()
        tasks: list[asyncio.Task[None]] = []
        timer: asyncio.TimerHandle | None = None
        try:
            async with self._uow() as uow:
                claimed = [c.session_id for c in claims]
                found = {s.id: s for s in await uow.sessions.get_many(claimed)}
                missing = [i for i in claimed if i not in found]
                unreadable = await uow.sessions.unreadable(missing) if missing else []
            if unreadable:
                await self._set_aside(unreadable, report)
                handed.update(row.session_id for row in unreadable)
            now = await self._index.now()
            in_flight = asyncio.Semaphore(IN_FLIGHT)
            group: list[str] = []

            def send_group() -> None:
                nonlocal group, timer
                if timer is not None:
                    timer.cancel()
                    timer = None
                if not group:
                    return
                ids, group = group, []
                handed.update(ids)
                task = asyncio.create_task(self._act_guarded(ids, report))
                task.add_done_callback(lambda _: _release(in_flight, len(ids)))
                tasks.append(task)

            for claim in claims:
                if claim.session_id in handed:
                    continue
                session = found.get(claim.session_id)
                if session is None:
                    await self._index.forget(claim.session_id)
                    handed.add(claim.session_id)
                    report.dropped += 1
                    continue
                if self.stopping:
                    await self._index.retry_at(claim.session_id, claim.due_at)
                    handed.add(claim.session_id)
                    continue
                await in_flight.acquire()
                if session.is_due(now):
                    # The turn of the one call made under the row lock is taken before the row
                    # is locked: waiting holds no lock. (Calls made without a lock take theirs
                    # at the gateway.)
                    await self._budget.acquire()
                group.append(claim.session_id)
                if len(group) >= GROUP_MAX:
                    send_group()
                elif timer is None:
                    timer = asyncio.get_running_loop().call_later(GROUP_WAIT_SECONDS, send_group)
            send_group()
        except BaseException:
            if timer is not None:
                timer.cancel()
            await self._give_back([c for c in claims if c.session_id not in handed])
            raise
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
        return report

    async def _give_back(self, claims: Sequence[Claim]) -> None:
        """Put claims back on the schedule at their own due moments, for any worker to take as
        soon as it can act on them (if the index is down too, their leases lapse within
        seconds: the renewing index stops renewing what it was asked to give back)."""
        if not claims:
            return
        log.warning("expiry_claims_given_back", claims=len(claims))
        results = await asyncio.gather(
            *(self._index.retry_at(c.session_id, c.due_at) for c in claims),
            return_exceptions=True,
        )
        failed = sum(1 for result in results if isinstance(result, BaseException))
        if failed:
            log.warning("expiry_claims_left_to_lapse", claims=failed)

    async def _set_aside(self, windows: Sequence[UnreadableWindow], report: PassReport) -> None:
        """Rows this version cannot read (a status a newer version wrote, say) leave the
        schedule, are counted and alerted; the windows claimed with them go on."""
        now = self._t.clock.now()
        for unreadable in windows:
            self._t.metrics.increment("payments.window.unreadable")
            log.error(
                "window_unreadable_set_aside",
                session_id=unreadable.session_id,
                stored_status=unreadable.status,
                problem=unreadable.problem,
            )
            report.set_aside += 1
        async with self._uow() as uow:
            for unreadable in windows:
                uow.record(
                    AuditEntry(
                        session_id=unreadable.session_id,
                        action="operations_alerted",
                        actor=ACTOR,
                        from_status=unreadable.status[:40],
                        to_status=unreadable.status[:40],
                        details={"alert": "window_unreadable", "problem": unreadable.problem},
                        at=now,
                    ),
                    [messages.on_window_unreadable(unreadable, now)],
                )
            await uow.commit()
        for unreadable in windows:
            await self._index.forget(unreadable.session_id)

    async def sweep_store(self) -> int:
        """Re-index scheduled windows whose due moment passed without the index holding them
        (a lost Redis key, a crash between commit and index update): the backstop."""
        now = await self._index.now()
        async with self._uow() as uow:
            overdue = await uow.sessions.overdue_scheduled(now - SWEEP_GRACE, 10_000)
        scheduled = await self._index.scheduled_ids() if overdue else set()
        missing = [session for session in overdue if session.id not in scheduled]
        await each(missing, self._index.put, at_once=INDEX_CONCURRENCY)
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
            structlog.contextvars.unbind_contextvars("session_id")
            log.warning(
                "expiry_batch_failed",
                windows=len(session_ids),
                error=f"{type(error).__name__}: {error}",
                exc_info=True,
            )
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
        # call, side by side: a slow or hung call holds its own row only. Once a window's
        # transaction committed, nothing is reported as its failure (DESIGN): what fails after
        # is logged, counted and repaired from the store.
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
            await self._settle_after_commit(moved)
            report.rescheduled += len(moved)
        if changed:
            await self._settle_after_commit(changed)
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
            if (
                current.expire_checkout_id is not None
                or current.needs_new_checkout(now)
                or current.confirmation_check_due(now)
            ):
                try:
                    if current.expire_checkout_id is not None:
                        await self._expire_other_checkout(current, report)
                    elif current.needs_new_checkout(now):
                        await self._replace_checkout(current, report)
                    else:
                        await self._recheck_confirmation(current, report)
                except Exception as error:
                    # This window's own step failed: it alone is retried, not its group.
                    await self._failed(current.id, error, report)
            else:
                # Extended meanwhile, reminded, or not due yet: back on the schedule as it stands.
                on_schedule.append(current)
                report.rescheduled += 1
        if on_schedule:
            await self._settle_after_commit(on_schedule)

    async def _settle_after_commit(self, sessions: Sequence[PaymentSession]) -> None:
        """Tell the index what the store now holds; a failure is repaired, not retried here."""
        try:
            await self._index.settle_many(sessions)
        except Exception as error:
            for session in sessions:
                self._t.after_commit_failed("index", session.id, error)
                self._t.repairs.add(session.id)

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
            await self._t.expire_quietly(
                checkout.id, f"unused:{checkout.id}", account=session.stripe_account
            )
            if current is not None:
                await self._index.settle_many([current])
            return
        await self._index.settle_many([rotated])
        await self._t.announce(rotated, "rotated", reindex=False)
        report.rotated += 1
        if current.checkout_session_id:
            await self._t.expire_quietly(
                current.checkout_session_id,
                f"rotated:{current.checkout_session_id}",
                account=current.stripe_account,
            )

    async def _expire_other_checkout(self, session: PaymentSession, report: PassReport) -> None:
        """A webhook recorded a payment on one of the window's sessions and left the other,
        still open, to us: expire it at Stripe (on the window's account), then clear the task.
        A failure is retried with the backoff of any expiry."""
        checkout_id = session.expire_checkout_id
        assert checkout_id is not None
        try:
            await self._t.gateway.expire(
                checkout_id,
                idempotency_key=f"paid-elsewhere:{checkout_id}:{session.stripe_attempt_key}",
                account=session.stripe_account,
            )
        except (CheckoutNotOpen, CheckoutSessionMissing) as gone:
            # Already closed (a second payment there is its own webhook's duplicate alert).
            log.info("other_checkout_not_open", checkout_session_id=checkout_id, why=str(gone))
        except Exception as error:
            await self._failed(session.id, error, report)
            return
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            if current is not None and current.expire_checkout_id == checkout_id:
                current = replace(current, expire_checkout_id=None)
                await uow.sessions.record_bookkeeping(current)
                await uow.commit()
        log.info(
            "other_checkout_expired",
            checkout_session_id=checkout_id,
            stripe_account=session.stripe_account,
        )
        report.expired_other += 1
        if current is None:
            await self._index.forget(session.id)
        else:
            await self._index.settle_many([current])

    async def _recheck_confirmation(self, session: PaymentSession, report: PassReport) -> None:
        """No webhook settled a pending payment: ask Stripe and settle from its answer."""
        checkout_id = session.checkout_session_id
        checkout = (
            await self._t.gateway.retrieve(checkout_id, account=session.stripe_account)
            if checkout_id
            else None
        )
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
        # 0: settled meanwhile (or gone), so no failure is recorded; the next pass takes the
        # window straight back and settles the index from the store.
        delay = (
            backoff_delay(attempts, first=STRIPE_RETRY_FIRST, cap=MAX_BACKOFF)
            if attempts
            else timedelta(0)
        )
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
