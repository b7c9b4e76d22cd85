"""What tests steer and observe: injected faults and per-endpoint request counts."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    ERROR = "error"  # answer `status`: Stripe's api_error body, or `message` if given
    RATE_LIMIT = "rate_limit"  # 429 that the SDKs do not retry
    LOCK_TIMEOUT = "lock_timeout"  # 429 with `Stripe-Should-Retry: true`, which they do retry
    DELAY = "delay"  # wait `delay` seconds, then answer normally
    DROP = "drop"  # close the connection without an answer


@dataclass(slots=True)
class Fault:
    """One injected misbehaviour, for the next `count` requests or until `until` (epoch s)."""

    kind: FaultKind
    count: int | None = 1
    until: float | None = None
    status: int = 500
    delay: float = 0.0
    message: str | None = None  # ERROR only: an invalid_request_error with this message
    path: str | None = None  # only requests whose path contains this
    after: bool = False  # DROP only: handle the request (state changes), then lose the answer

    @classmethod
    def from_json(cls, data: Mapping[str, Any], clock: Callable[[], float] = time.time) -> Fault:
        """Read `{"kind", "count"?, "seconds"?, "status"?, "delay"?, "message"?, "path"?,
        "after"?}`; `seconds` without `count` means every request for that long."""
        seconds = data.get("seconds")
        count = data.get("count", None if seconds is not None else 1)
        return cls(
            kind=FaultKind(data["kind"]),
            count=None if count is None else int(count),
            until=None if seconds is None else clock() + float(seconds),
            status=int(data.get("status", 500)),
            delay=float(data.get("delay", 0.0)),
            message=data.get("message"),
            path=data.get("path"),
            after=bool(data.get("after", False)),
        )


class Faults:
    """Faults waiting to hit requests, first added first used."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, path: str) -> Fault | None:
        """The fault this request meets, if any; uses up one of its count."""
        now = self._clock()
        with self._lock:
            self._pending = [
                f
                for f in self._pending
                if (f.count is None or f.count > 0) and (f.until is None or f.until > now)
            ]
            for fault in self._pending:
                if fault.path is None or fault.path in path:
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None


class CallLog:
    """How many requests each `METHOD /path` received, faults included; when each arrived
    (the latest `TIMELINE` of them) and the statuses answered."""

    TIMELINE = 100_000

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests: list[tuple[str, str, str | None]] = []
        self._times: deque[tuple[float, str]] = deque(maxlen=self.TIMELINE)
        self._statuses: Counter[int] = Counter()

    def record(self, method: str, path: str, account: str | None = None) -> None:
        with self._lock:
            self._counts[f"{method} {path}"] += 1
            self._requests.append((method, path, account))
            self._times.append((self._clock(), f"{method} {path}"))

    def requests(self, path_contains: str = "") -> list[tuple[str, str, str | None]]:
        """Every request so far as `(method, path, Stripe-Account or None)`, oldest first."""
        with self._lock:
            return [r for r in self._requests if path_contains in r[1]]

    def answered(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def timeline(self) -> dict[str, Any]:
        """`{"calls": [[epoch seconds, "METHOD /path"], ...], "statuses": {"200": n, ...}}`."""
        with self._lock:
            return {
                "calls": [[at, key] for at, key in self._times],
                "statuses": {str(status): n for status, n in self._statuses.items()},
            }

    def count(self, path_suffix: str = "", method: str | None = None) -> int:
        """Requests whose path ends with `path_suffix` (and, if given, used `method`)."""
        with self._lock:
            return sum(
                n
                for key, n in self._counts.items()
                if key.endswith(path_suffix) and (method is None or key.startswith(f"{method} "))
            )

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._times.clear()
            self._statuses.clear()
