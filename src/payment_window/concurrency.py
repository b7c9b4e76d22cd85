"""One async step over many items, a bounded number at a time (index writes, reconcile checks):
enough in flight to hide round trips, never so many that a large batch floods a connection
pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def each(
    items: Sequence[T], action: Callable[[T], Awaitable[object]], *, at_once: int
) -> None:
    """Run `action` over `items`, `at_once` at a time, in order of the slices."""
    for start in range(0, len(items), at_once):
        await asyncio.gather(*(action(item) for item in items[start : start + at_once]))
