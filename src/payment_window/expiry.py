"""The expiry task: close every overdue window exactly once, through crashes and Stripe faults.

A pass claims due windows from the index (a claim is a lease: a worker killed mid-way loses
nothing, its claims come back when the lease ends). Stripe's budget is spent in deadline order,
so in a burst the k-th window closes about k / budget after the deadline. Windows whose turns
come together are taken on as a group: reminders and policies are read and recorded once per
group, and the index is settled once per group; each due window is closed in its own transaction
under its own row lock with its one Stripe call (bounded, not retried inside the lock), so no
window ever waits on another window's Stripe call (`expiry_group.py`). The same pass sends due
buyer reminders (`reminders.py`), replaces the Stripe session of a window that outlives it
(`rotation.py`), expires the other session of a window paid through one (`paid_elsewhere.py`)
and asks Stripe again about payments still awaiting confirmation (`recheck.py`); a failed step
comes back with a backoff (`expiry_retries.py`). Every Stripe call of the pass is a background
call of the deployment's budget; the slot of each window's locked call is taken before its row
is locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog

from payment_window.concurrency import each
from payment_window.domain import messages, stripe_calls
from payment_window.domain.events import AuditEntry
from payment_window.domain.ports import (
    Claim,
    RateLimiter,
    UnitOfWorkFactory,
    UnreadableWindow,
    WindowIndex,
)
from payment_window.expiry_group import GroupExpiry
from payment_window.expiry_retries import ExpiryRetries
from payment_window.paid_elsewhere import OtherCheckoutExpiry
from payment_window.pass_report import ACTOR, PassReport
from payment_window.recheck import ConfirmationRecheck
from payment_window.reminders import Reminders
from payment_window.rotation import CheckoutRotation
from payment_window.transitions import Transitions

log = structlog.get_logger(__name__)

# How long past its due moment a window may sit unindexed before the sweep re-indexes it; the
# grace keeps the sweep out of the way of a worker that is about to act on it anyway.
SWEEP_GRACE = timedelta(seconds=10)
# Windows in hand at once; each waits for its own turn in Stripe's budget.
IN_FLIGHT = 64
# A group is sent when full, or this long after its first window's turn came: long enough for a
# busy worker to gather windows (at 2 ms groups stayed near one window and a worker closed
# ~150/s; at 20 ms ~340/s), short beside the 1 s a burst may add to the k-th window's floor.
GROUP_MAX = 32
GROUP_WAIT_SECONDS = 0.02
INDEX_CONCURRENCY = 64


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
        self._rebuild = rebuild
        self._stopping = asyncio.Event()
        retries = ExpiryRetries(uow, index, transitions.metrics, transitions.clock)
        self._group = GroupExpiry(
            uow=uow,
            transitions=transitions,
            index=index,
            retries=retries,
            reminders=Reminders(transitions, reminder_offsets),
            rotation=CheckoutRotation(uow, transitions, index),
            recheck=ConfirmationRecheck(uow, transitions, index),
            other_checkout=OtherCheckoutExpiry(uow, transitions, index, retries),
        )

    def stop(self) -> None:
        """Finish the windows in hand, give the rest of the claims back, and return."""
        self._stopping.set()

    def now(self) -> datetime:
        """The one clock every due-ness decision and timestamp of the pass comes from."""
        return self._t.clock.now()

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
            now = self._t.clock.now()
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
                task = asyncio.create_task(self._group.act_guarded(ids, report))
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
        now = self._t.clock.now()
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


def _release(semaphore: asyncio.Semaphore, times: int) -> None:
    for _ in range(times):
        semaphore.release()
