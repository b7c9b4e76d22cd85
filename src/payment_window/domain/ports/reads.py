"""Read-only queries over the store, for operators and the index rebuild."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from payment_window.domain.buyers import BuyerRecord, Period, RepeatNonPayer
from payment_window.domain.session import PaymentSession
from payment_window.domain.views import AuditRecord, Summary, WindowFilter


class ReadModel(Protocol):
    """Read-only queries over the store (the truth) for operators and the index rebuild."""

    async def windows(
        self, query: WindowFilter, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[PaymentSession]:
        """Windows matching `query`, by `(expires_at, id)`, strictly after `after`."""
        ...

    async def summary(self, now: datetime) -> Summary: ...

    async def buyer_record(self, buyer_id: str, period: Period) -> BuyerRecord:
        """The buyer's windows opened in `period`, by outcome, and the last one closed unpaid."""
        ...

    async def repeat_non_payers(self, period: Period, limit: int) -> list[RepeatNonPayer]:
        """The `limit` buyers with the most windows opened in `period` and closed unpaid, most
        first (ties by buyer id); buyers with none are never listed."""
        ...

    async def session(self, session_id: str) -> PaymentSession | None: ...

    async def audit_trail(self, session_id: str) -> list[AuditRecord]:
        """The session's audit entries, oldest first."""
        ...

    async def unsettled_count(self) -> int:
        """Open or awaiting-confirmation sessions."""
        ...

    async def unsettled_after(self, last_id: str, limit: int) -> list[PaymentSession]:
        """Open or awaiting-confirmation sessions with an id after `last_id`, by id."""
        ...

    async def sessions(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        """Those of these sessions that exist, in any order."""
        ...
