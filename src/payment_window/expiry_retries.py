"""A window whose Stripe step failed: the failure is recorded on its row and the window comes
back after a backoff that grows with the failures the store holds."""

from __future__ import annotations

from datetime import timedelta

import structlog

from payment_window.backoff import backoff_delay
from payment_window.domain.errors import PaymentProviderUnavailable
from payment_window.domain.ports import Clock, Metrics, UnitOfWorkFactory, WindowIndex
from payment_window.pass_report import PassReport

log = structlog.get_logger(__name__)

# A window whose Stripe call failed is tried again 2 s later, doubling up to 5 minutes, so a
# Stripe outage is not met with a synchronized storm.
STRIPE_RETRY_FIRST = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=5)


class ExpiryRetries:
    """Records a window's failed attempt and puts it back on the schedule, backed off."""

    def __init__(
        self, uow: UnitOfWorkFactory, index: WindowIndex, metrics: Metrics, clock: Clock
    ) -> None:
        self._uow = uow
        self._index = index
        self._metrics = metrics
        self._clock = clock

    async def retry_later(self, session_id: str, error: Exception, report: PassReport) -> None:
        """Count and record the failed attempt, then schedule the window again, backed off."""
        kind = error.kind if isinstance(error, PaymentProviderUnavailable) else "other"
        self._metrics.increment("payments.window.stripe_errors", tags=[f"kind:{kind}"])
        try:
            async with self._uow() as uow:
                attempts = await uow.sessions.record_expiry_failure(
                    session_id, f"{type(error).__name__}: {error}"
                )
                await uow.commit()
        except Exception as unrecorded:
            # The next attempt may carry this attempt's idempotency key again (Stripe would
            # replay its answer): said, counted, and backed off by the attempts the store has.
            self._metrics.increment(
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
            await self._index.retry_at(session_id, self._clock.now() + delay)
        except Exception:
            self._metrics.increment(
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
