"""Clocks: this process's own, the one clock that decides and stamps (the index's or the store's,
learnt as an offset to ours), and Stripe's (learnt from the `Date` of its answers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import structlog

from payment_window.domain.ports import Clock

log = structlog.get_logger(__name__)

REFERENCE_REFRESH_SECONDS = 10.0
REFERENCE_TIMEOUT_SECONDS = 2.0
STRIPE_SAMPLES = 32


class SystemClock:
    """The process clock. `offset_seconds` shifts it: development and tests only (the setting
    `PW_DEV_CLOCK_OFFSET_SECONDS` is refused in production), to run a process with a clock that
    is fast or slow."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = timedelta(seconds=offset_seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class ReferenceClock:
    """The index's (or the store's) clock, read as this process's clock plus the offset last
    measured: every state change of every process is stamped by this one clock.

    `sync` measures the offset (the processes call it at start-up); `now` starts a new
    measurement in the background when the last is older than a few seconds."""

    def __init__(
        self,
        process: Clock,
        source: Callable[[], Awaitable[datetime]],
        refresh_seconds: float = REFERENCE_REFRESH_SECONDS,
    ) -> None:
        self._process = process
        self._source = source
        self._refresh = refresh_seconds
        self._offset = timedelta(0)
        self._synced_at = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def offset(self) -> timedelta:
        return self._offset

    def now(self) -> datetime:
        idle = self._refreshing is None or self._refreshing.done()
        if time.monotonic() - self._synced_at >= self._refresh and idle:
            with contextlib.suppress(RuntimeError):  # no running loop: a plain read
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh_once())
        return self._process.now() + self._offset

    async def _refresh_once(self) -> None:
        try:
            await self.sync()
        finally:
            self._refreshing = None

    async def sync(self) -> None:
        """Measure the offset now; keeps the last one when the source cannot answer."""
        self._synced_at = time.monotonic()  # one attempt per period, answered or not
        before = self._process.now()
        try:
            remote = await asyncio.wait_for(self._source(), REFERENCE_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("reference_clock_unreadable", error=repr(error))
            return
        after = self._process.now()
        offset = remote - (before + (after - before) / 2)
        if abs((offset - self._offset).total_seconds()) > 1:
            log.info("reference_clock_offset", offset_seconds=round(offset.total_seconds(), 3))
        self._offset = offset


class StripeClock:
    """Stripe's clock as seen from this process: the offset learnt from the `Date` header of
    Stripe's answers (and the `created` of what it makes), both whole seconds.

    Each answer bounds the offset: Stripe stamped it between our sending and our receiving, at
    a moment in [date, date + 1 s). The bounds of recent answers intersect to a narrow range
    (reset when they disagree: a clock was stepped)."""

    def __init__(self, process: Clock) -> None:
        self._process = process
        self._bounds: deque[tuple[float, float]] = deque(maxlen=STRIPE_SAMPLES)
        self._low = 0.0
        self._high = 0.0

    def process_now(self) -> datetime:
        return self._process.now()

    def observe(self, stamped: datetime, sent: datetime, received: datetime) -> None:
        """Stripe stamped `stamped` (whole seconds) on an answer we sent and received so."""
        low = (stamped - received).total_seconds()
        high = (stamped + timedelta(seconds=1) - sent).total_seconds()
        self._bounds.append((low, high))
        lows, highs = max(b[0] for b in self._bounds), min(b[1] for b in self._bounds)
        if lows > highs:
            self._bounds.clear()
            self._bounds.append((low, high))
            lows, highs = low, high
        self._low, self._high = lows, highs

    def observe_date_header(self, value: str | None, sent: datetime, received: datetime) -> None:
        if not value:
            return
        try:
            stamped = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        if stamped.tzinfo is None:
            stamped = stamped.replace(tzinfo=UTC)
        self.observe(stamped, sent, received)

    @property
    def known(self) -> bool:
        return bool(self._bounds)

    @property
    def offset(self) -> timedelta:
        """Stripe's clock minus ours (zero until Stripe first answered)."""
        return timedelta(seconds=(self._low + self._high) / 2)

    @property
    def uncertainty(self) -> timedelta | None:
        """How far the offset may be off; None until Stripe first answered."""
        if not self._bounds:
            return None
        return timedelta(seconds=(self._high - self._low) / 2)

    def now(self) -> datetime:
        return self._process.now() + self.offset
