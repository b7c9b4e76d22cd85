"""How long to wait after failures in a row, the one schedule every retry of the service uses
(Stripe calls of the expiry task, outbox deliveries, the long-running loops)."""

from __future__ import annotations

import random
from datetime import timedelta

# Past this many doublings every wait of the service is at its cap; the bound keeps the
# power finite for any count of failures.
_MAX_DOUBLINGS = 30


def backoff_delay(failures: int, *, first: timedelta, cap: timedelta) -> timedelta:
    """The wait after the `failures`-th failure in a row: `first` doubling with each failure,
    never over `cap`, jittered in its upper half so callers that failed together (workers,
    relays) do not retry together."""
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    ceiling = min(cap.total_seconds(), first.total_seconds() * 2.0**doublings)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# A long-running loop (the worker's passes, the server's background loops) waits 0.25 s after
# a failure, doubling to a few seconds.
LOOP_BACKOFF_FIRST = timedelta(seconds=0.25)
LOOP_BACKOFF_CAP = timedelta(seconds=5)


def loop_backoff(failures: int) -> float:
    """Seconds a long-running loop waits after its `failures`-th failure in a row."""
    return backoff_delay(failures, first=LOOP_BACKOFF_FIRST, cap=LOOP_BACKOFF_CAP).total_seconds()
