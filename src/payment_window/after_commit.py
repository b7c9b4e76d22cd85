"""After a change is committed: the index and live viewers are told. These steps never fail
the change: what they miss is counted, logged and repaired from the store (`IndexRepairs`, the
expiry task's sweep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from payment_window.domain.ports import ChangeFeed, Clock, Metrics, WindowChange, WindowIndex
from payment_window.domain.session import CloseReason, PaymentSession, Status, closed_event
from payment_window.domain.status import WindowStatus
from payment_window.index_repairs import IndexRepairs

log = structlog.get_logger(__name__)


class AfterCommit:
    """Tells the index and live viewers of committed changes."""

    def __init__(
        self,
        *,
        index: WindowIndex,
        changes: ChangeFeed,
        repairs: IndexRepairs,
        metrics: Metrics,
        clock: Clock,
        render: Callable[[WindowStatus], dict[str, Any]],
    ) -> None:
        self.index = index
        self.changes = changes
        self.repairs = repairs
        self.metrics = metrics
        self.clock = clock
        # How live viewers are shown a status (the API's body), so they see what a read shows.
        self.render = render

    async def announce_closed(self, session: PaymentSession, *, reindex: bool = True) -> None:
        """Metrics, index and live viewers for a committed close or payment."""
        if session.status is Status.EXPIRED:
            self.metrics.increment(
                "payments.window.expired_count", tags=[f"reason:{session.reason}"]
            )
            if session.reason == CloseReason.WINDOW_ELAPSED and session.expired_at:
                lateness = (session.expired_at - session.expires_at).total_seconds()
                self.metrics.distribution("payments.window.expiry_lateness", max(0.0, lateness))
            await self.announce(session, closed_event(session.reason), reindex=reindex)
        else:
            await self.announce(session, session.status.value, reindex=reindex)
        log.info(
            "payment_window_closed",
            session_id=session.id,
            status=session.status.value,
            reason=session.reason,
        )

    async def announce(self, session: PaymentSession, event: str, *, reindex: bool = True) -> None:
        """Tell the index (unless the caller settles it itself) and live viewers of a committed
        change. Never raises: the change is stored, and what fails here is repaired."""
        wake = event in ("opened", "extended", "rotated")
        if reindex:
            try:
                await self.index.put(session)
                if wake:
                    await self.index.wake()
            except Exception as error:
                self.step_failed("index", session.id, error)
                self.repairs.add(session.id, wake=wake)
        try:
            await self.changes.publish(
                WindowChange(
                    session.id, event, self.render(WindowStatus.of(session, self.clock.now()))
                )
            )
        except Exception as error:
            self.step_failed("live_events", session.id, error)

    async def wake_workers(self, session: PaymentSession) -> None:
        """Tell sleeping workers a committed change left them Stripe work to do now."""
        try:
            await self.index.wake()
        except Exception as error:
            self.step_failed("index", session.id, error)
            self.repairs.add(session.id, wake=True)

    def step_failed(self, step: str, session_id: str, error: Exception) -> None:
        """Count and log a step after the commit that failed (the change itself stands)."""
        self.metrics.increment("payments.window.after_commit_failures", tags=[f"step:{step}"])
        log.warning("after_commit_step_failed", step=step, session_id=session_id, error=repr(error))
