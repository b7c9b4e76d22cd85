"""The process clock (the expiry task judges deadlines by the index's clock instead)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
