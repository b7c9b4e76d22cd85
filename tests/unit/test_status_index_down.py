"""A status read whose index is down is answered from the store, and the next reads go straight
to the store for a moment instead of each paying the index client's connect retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from payment_window import service
from payment_window.domain.access import Actor, Role
from payment_window.domain.session import CloseReason, PaymentSession, Status
from payment_window.service import PaymentWindows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLOSED = PaymentSession(
    id="pw_1",
    auction_id="auc_1",
    maker_id="mk_1",
    buyer_id="by_1",
    amount=1000,
    currency="eur",
    expires_at=NOW - timedelta(seconds=1),
    created_at=NOW - timedelta(hours=1),
    updated_at=NOW,
    status=Status.EXPIRED,
    reason=CloseReason.WINDOW_ELAPSED.value,
    version=2,
)


class DownIndex:
    def __init__(self) -> None:
        self.calls = 0

    async def snapshot(self, session_id: str) -> Any:
        self.calls += 1
        raise ConnectionError("index unreachable")


class Store:
    def __init__(self) -> None:
        self.sessions = self
        self.reads = 0

    async def get(self, session_id: str) -> PaymentSession | None:
        self.reads += 1
        return CLOSED if session_id == CLOSED.id else None

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_reads_go_to_the_store_while_the_index_is_down(monkeypatch: Any) -> None:
    index, store = DownIndex(), Store()
    transitions = SimpleNamespace(
        clock=SimpleNamespace(now=lambda: NOW),
        after_commit=SimpleNamespace(repairs=set(), index=index),
    )
    windows = PaymentWindows(uow=lambda: store, transitions=transitions, window_minutes=60)  # type: ignore[arg-type]
    buyer = Actor(subject="by_1", role=Role.BUYER)

    for _ in range(3):
        status = await windows.status(CLOSED.id, buyer)
        assert status.status is Status.EXPIRED  # never shown open once the store closed it
    assert index.calls == 1 and store.reads == 3

    clock = [1_000_000.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    clock[0] += service.INDEX_DOWN_SECONDS + 0.1
    await windows.status(CLOSED.id, buyer)
    assert index.calls == 2  # after the pause the index is asked again
