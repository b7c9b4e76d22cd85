"""What every process is given: a clock and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class Metrics(Protocol):
    def increment(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None: ...

    def gauge(self, name: str, value: float, tags: Sequence[str] = ()) -> None: ...

    def distribution(self, name: str, value: float, tags: Sequence[str] = ()) -> None: ...

    def close(self) -> None: ...


class Reachable(Protocol):
    """A server a readiness check asks: `ping` returns once it answered."""

    async def ping(self) -> None: ...
