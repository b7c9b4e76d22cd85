"""The window index: open windows' deadlines for the expiry workers, snapshots for the status
read; rebuildable from the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_window.domain.session import CloseReason, PaymentSession, Status


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    """What the status read needs, as the index holds it."""

    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    status: Status
    expires_at: datetime
    version: int
    reason: CloseReason | None
    checkout_url: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A due window taken by one expiry worker until its lease ends."""

    session_id: str
    due_at: datetime


class WindowIndex(Protocol):
    """Deadlines of open windows, claimable by many workers; rebuildable from the store."""

    async def now(self) -> datetime:
        """The index's own clock: every worker compares deadlines against this one."""
        ...

    async def put(self, session: PaymentSession) -> None:
        """Record the session's current state; open sessions are scheduled at their deadline."""
        ...

    async def snapshot(self, session_id: str) -> WindowSnapshot | None: ...

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]: ...

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        """Extend the leases of claims still held (not lapsed, not given back); how many."""
        ...

    async def release(self, session_id: str) -> None:
        """Done with a claim: the session left the schedule or was re-put."""
        ...

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        """Give a claim back, to be due again at `due_at`."""
        ...

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        """`put` each session as it now stands and `release` its claim (a closed batch)."""
        ...

    async def next_due(self) -> datetime | None: ...

    async def pending_count(self) -> int: ...

    async def scheduled_ids(self) -> set[str]: ...

    async def forget(self, session_id: str) -> None: ...

    async def wake(self) -> None:
        """Tell sleeping workers the schedule changed (a window opened or moved)."""
        ...

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return on a wake, or after `timeout` seconds without one."""
        ...

    async def needs_rebuild(self) -> bool:
        """The index lost its contents (a flushed Redis) and must be rebuilt from the store."""
        ...

    async def mark_rebuilt(self) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
