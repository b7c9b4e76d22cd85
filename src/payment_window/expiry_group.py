"""One group of claimed windows, acted on together: the group's bookkeeping (row locks,
policies, reminders) in one short transaction; each due window closed in its own transaction
under its own row lock with its one Stripe call; each window not due yet handed to the Stripe
step it has waiting (expire a session paid elsewhere, rotate, re-check a payment) or put back
on the schedule as it stands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog

from payment_window.domain import stripe_calls
from payment_window.domain.errors import CheckoutSessionMissing
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import UnitOfWork, UnitOfWorkFactory, WindowIndex
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.expiry_retries import ExpiryRetries
from payment_window.paid_elsewhere import OtherCheckoutExpiry
from payment_window.pass_report import ACTOR, PassReport
from payment_window.recheck import ConfirmationRecheck
from payment_window.reminders import Reminders
from payment_window.rotation import CheckoutRotation
from payment_window.transitions import Transitions

log = structlog.get_logger(__name__)

BUSY_RETRY = timedelta(seconds=1)
# Due windows being closed at once by one worker, each holding a store connection (and its row)
# for its one Stripe call: few, since every worker process of a deployment holds as many at
# once (8 workers at 16 each exhausted a 100-connection PostgreSQL).
CLOSE_CONCURRENCY = 4

FollowUp = Callable[[PaymentSession, PassReport], Awaitable[None]]


class GroupExpiry:
    """Acts on a group of claimed windows; every window of it ends closed, retried, or back on
    the schedule."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        transitions: Transitions,
        index: WindowIndex,
        retries: ExpiryRetries,
        reminders: Reminders,
        rotation: CheckoutRotation,
        recheck: ConfirmationRecheck,
        other_checkout: OtherCheckoutExpiry,
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._index = index
        self._retries = retries
        self._reminders = reminders
        self._rotation = rotation
        self._recheck = recheck
        self._other_checkout = other_checkout
        self._closing = asyncio.Semaphore(CLOSE_CONCURRENCY)

    async def act_guarded(self, session_ids: list[str], report: PassReport) -> None:
        """`act`, with a failure of the group's own transaction retried window by window."""
        try:
            await self.act(session_ids, report)
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
                await self._retries.retry_later(session_id, error, report)

    async def act(self, session_ids: list[str], report: PassReport) -> None:
        """Lock the group, send its due reminders, close its due windows, follow up the rest."""
        now = self._t.clock.now()
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
                self._reminders.send(uow, session, now)
                for session in locked
                if self._reminders.due(session, now)
            ]
            if reminded:
                await uow.sessions.record_reminders(reminded)
                report.reminded += len(reminded)
                await uow.commit()
        await self._close_all_due(due, now, policies, report)
        reminded_by_id = {session.id: session for session in reminded}
        not_due = [reminded_by_id.get(s.id, s) for s in locked if not s.is_due(now)]
        await self._follow_up_all(not_due, now, report)

    async def _close_all_due(
        self,
        due: Sequence[PaymentSession],
        now: datetime,
        policies: dict[str, ExtensionPolicy],
        report: PassReport,
    ) -> None:
        """Each due window in its own transaction, under its own row lock, with its one Stripe
        call, side by side: a slow or hung call holds its own row only. Once a window's
        transaction committed, nothing is reported as its failure (DESIGN): what fails after
        is logged, counted and repaired from the store."""
        outcomes = await asyncio.gather(
            *(
                self._close_due(session.id, now, policies[session.maker_id], report)
                for session in due
            ),
            return_exceptions=True,
        )
        stripe_failed: dict[str, Exception] = {}
        changed: list[PaymentSession] = []
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
        # Closed or extended by someone else meanwhile: back on the schedule as it stands.
        await self._reschedule(moved, report)
        await self._settle(changed)
        for closed in changed:
            structlog.contextvars.bind_contextvars(session_id=closed.id)
            await self._t.after_commit.announce_closed(closed, reindex=False)
            if closed.status is Status.EXPIRED:
                report.expired += 1
            else:
                report.paid += 1
        for session_id, error in stripe_failed.items():
            structlog.contextvars.bind_contextvars(session_id=session_id)
            await self._retries.retry_later(session_id, error, report)

    async def _follow_up_all(
        self, not_due: Sequence[PaymentSession], now: datetime, report: PassReport
    ) -> None:
        """Each window not due yet takes the Stripe step it has waiting, or goes back on the
        schedule as it stands (extended meanwhile, reminded, or not due yet)."""
        on_schedule: list[PaymentSession] = []
        for session in not_due:
            structlog.contextvars.bind_contextvars(session_id=session.id)
            follow_up = self._follow_up(session, now)
            if follow_up is None:
                on_schedule.append(session)
                continue
            try:
                await follow_up(session, report)
            except Exception as error:
                # This window's own step failed: it alone is retried, not its group.
                await self._retries.retry_later(session.id, error, report)
        await self._reschedule(on_schedule, report)

    def _follow_up(self, session: PaymentSession, now: datetime) -> FollowUp | None:
        """The Stripe step a window not due yet has waiting, if any."""
        if session.expire_checkout_id is not None:
            return self._other_checkout.expire
        if session.needs_new_checkout(now):
            return self._rotation.rotate
        if session.confirmation_check_due(now):
            return self._recheck.recheck
        return None

    async def _reschedule(self, sessions: Sequence[PaymentSession], report: PassReport) -> None:
        """Windows left as they stand go back on the schedule at their own next moment."""
        await self._settle(sessions)
        report.rescheduled += len(sessions)

    async def _settle(self, sessions: Sequence[PaymentSession]) -> None:
        """Tell the index what the store now holds; a failure is repaired, not retried here."""
        if not sessions:
            return
        try:
            await self._index.settle_many(sessions)
        except Exception as error:
            for session in sessions:
                self._t.after_commit.step_failed("index", session.id, error)
                self._t.after_commit.repairs.add(session.id)

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
                    answer = await self._t.checkouts.expire_at_stripe(session)
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
