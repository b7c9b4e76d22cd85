"""Metrics: DogStatsD through the `datadog` package, or nothing when it is not configured."""

from __future__ import annotations

from collections.abc import Sequence

from datadog.dogstatsd.base import DogStatsd


class NullMetrics:
    """Metrics switched off: every call is accepted and dropped."""

    def increment(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None:
        pass

    def gauge(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        pass

    def distribution(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        pass

    def close(self) -> None:
        pass


class DogStatsdMetrics:
    """Sends each metric as a DogStatsD datagram over UDP, as it happens."""

    def __init__(self, host: str, port: int, constant_tags: Sequence[str] = ()) -> None:
        # Unbuffered and unaggregated (the defaults today, pinned here): a datagram leaves with
        # each call, so a short-lived process (a Lambda pass, `expire-due`) that exits without
        # calling close() loses nothing, and a count is never merged away before it is sent.
        self._client = DogStatsd(
            host=host,
            port=port,
            constant_tags=list(constant_tags),
            disable_buffering=True,
            disable_aggregation=True,
            disable_telemetry=True,
        )

    def increment(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None:
        self._client.increment(name, value, tags=list(tags))

    def gauge(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        self._client.gauge(name, value, tags=list(tags))

    def distribution(self, name: str, value: float, tags: Sequence[str] = ()) -> None:
        self._client.distribution(name, value, tags=list(tags))

    def close(self) -> None:
        self._client.flush()
        self._client.close_socket()
