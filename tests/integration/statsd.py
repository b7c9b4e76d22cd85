"""`StatsdServer`: a loopback UDP server that receives real DogStatsD datagrams and parses them.

It stands in for the Datadog agent. A datagram holds one or more lines
`name:value[:value…]|type[|@rate][|#tag,tag…][|c:container][|T<ts>]`; each value becomes one
`Metric`. Events (`_e{…}`) and service checks (`_sc|…`) are kept raw and not parsed.

`sync()` is the barrier the tests use: it sends a marker datagram to the server and waits until
the server has read it. Loopback UDP queues a datagram on the receiving socket during the
sender's `sendto`, so every metric sent before `sync()` was called has been read when it returns.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

_BARRIER_PREFIX = "__statsd_test_barrier__."


@dataclass(frozen=True)
class Metric:
    """One value of one metric line."""

    name: str
    value: float
    type: str  # c count, g gauge, d distribution, h histogram, ms timing, s set
    tags: tuple[str, ...] = ()
    sample_rate: float = 1.0
    extras: tuple[str, ...] = field(default=(), compare=False)

    def tag(self, key: str) -> str | None:
        """The value of the first `key:value` tag, or None."""
        for tag in self.tags:
            name, _, value = tag.partition(":")
            if name == key:
                return value
        return None


class MalformedDatagram(ValueError):
    pass


def parse_line(line: str) -> list[Metric]:
    """The metrics of one DogStatsD line (several when it packs values `n:1:2:3|d`)."""
    head, *fields = line.split("|")
    name, sep, raw_values = head.partition(":")
    if not sep or not name or not fields or not raw_values:
        raise MalformedDatagram(line)
    metric_type = fields[0]
    if metric_type not in {"c", "g", "d", "h", "ms", "s"}:
        raise MalformedDatagram(line)
    tags: tuple[str, ...] = ()
    rate = 1.0
    extras: list[str] = []
    for part in fields[1:]:
        if part.startswith("#"):
            tags = tuple(tag for tag in part[1:].split(",") if tag)
        elif part.startswith("@"):
            rate = float(part[1:])
        else:
            extras.append(part)  # container id (c:), timestamp (T), cardinality (card:)
    try:
        values = [float(value) for value in raw_values.split(":")]
    except ValueError:
        raise MalformedDatagram(line) from None
    return [Metric(name, value, metric_type, tags, rate, tuple(extras)) for value in values]


def parse_datagram(payload: bytes) -> tuple[list[Metric], list[str]]:
    """Metrics and the raw event / service-check lines of one datagram."""
    metrics: list[Metric] = []
    other: list[str] = []
    for line in payload.decode("utf-8").split("\n"):
        if not line:
            continue
        if line.startswith(("_e{", "_sc|")):
            other.append(line)
        else:
            metrics.extend(parse_line(line))
    return metrics, other


class StatsdServer:
    """Receives DogStatsD datagrams on 127.0.0.1 in a thread; collects what it parsed."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.datagrams: list[bytes] = []
        self.other: list[str] = []
        self.malformed: list[str] = []
        self._metrics: list[Metric] = []
        self._barriers: set[str] = set()
        self._changed = threading.Condition()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> Self:
        if self._socket is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A burst of metrics must not overflow the default receive buffer while the GIL is busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((self.host, self.port))
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="statsd-test", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._socket is None:
            return
        self._stopping.set()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._socket.close()
        self._socket = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                payload = self._socket.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._receive(payload)

    def _receive(self, payload: bytes) -> None:
        with self._changed:
            text = payload.decode("utf-8", errors="replace")
            if text.startswith(_BARRIER_PREFIX):
                self._barriers.add(text)
                self._changed.notify_all()
                return
            self.datagrams.append(payload)
            try:
                metrics, other = parse_datagram(payload)
            except (MalformedDatagram, UnicodeDecodeError):
                self.malformed.append(text)
            else:
                self._metrics.extend(metrics)
                self.other.extend(other)
            self._changed.notify_all()

    # --- reading --------------------------------------------------------------------------------

    def sync(self, timeout: float = 5.0) -> None:
        """Return once every datagram sent to this server before the call has been read."""
        marker = f"{_BARRIER_PREFIX}{uuid.uuid4().hex}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(marker.encode(), (self.host, self.port))
        with self._changed:
            if not self._changed.wait_for(lambda: marker in self._barriers, timeout):
                raise TimeoutError("the statsd server did not read its barrier datagram")
            self._barriers.discard(marker)

    def metrics(self, name: str | None = None, prefix: str | None = None) -> list[Metric]:
        """What was received so far (optionally one name, or names under a prefix), in order."""
        with self._changed:
            found = list(self._metrics)
        return [
            m
            for m in found
            if (name is None or m.name == name) and (prefix is None or m.name.startswith(prefix))
        ]

    def take(self) -> list[Metric]:
        """Everything received up to now (after a `sync()`), and forget it."""
        self.sync()
        with self._changed:
            taken, self._metrics = self._metrics, []
        return taken

    def clear(self) -> None:
        self.take()

    def wait_for(
        self, condition: Callable[[list[Metric]], bool], timeout: float = 5.0
    ) -> list[Metric]:
        """Wait until `condition(all metrics so far)` holds; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._metrics)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met; received {self._metrics!r}")
                self._changed.wait(remaining)
            return list(self._metrics)

    def wait_for_metric(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Metric]:
        """Wait until `count` values of `name` arrived; return those values."""
        self.wait_for(lambda ms: sum(m.name == name for m in ms) >= count, timeout)
        return self.metrics(name)


def counts(metrics: Iterable[Metric], prefix: str = "") -> dict[tuple[str, tuple[str, ...]], float]:
    """Counters summed per (name, sorted tags): what Datadog would show for the interval."""
    summed: dict[tuple[str, tuple[str, ...]], float] = {}
    for metric in metrics:
        if metric.type != "c" or not metric.name.startswith(prefix):
            continue
        key = (metric.name, tuple(sorted(metric.tags)))
        summed[key] = summed.get(key, 0.0) + metric.value / metric.sample_rate
    return summed
