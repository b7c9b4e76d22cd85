"""Property-based: for random histories of windows (buyers, when opened, how they ended), the
buyer records and the repeat non-payers the store answers equal a few lines of plain Python
over the same histories, on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.read_model import SqlReadModel
from payment_window.adapters.rows import session_values
from payment_window.adapters.store import create_engine
from payment_window.adapters.tables import payment_sessions
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.buyers import REPEAT_NON_PAYERS_SHOWN, UNKNOWN_REASON
from payment_window.domain.session import PAID_AFTER_CLOSE, CloseReason, PaymentSession, Status
from payment_window.operations import Operations

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Actor(subject="ops", role=Role.ADMIN)
BUYERS = [f"by-{n}" for n in range(12)]
OUTCOMES = [
    "open",
    "awaiting",
    "paid",
    PAID_AFTER_CLOSE,
    *(f"expired:{reason.value}" for reason in CloseReason),
    "expired:",  # a close stored without a reason
]


class FixedClock:
    def now(self) -> datetime:
        return NOW


@dataclass(frozen=True)
class Window:
    buyer_id: str
    opened_minutes_ago: int
    outcome: str
    closed_minutes_later: int


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[Window]]:
    days = draw(st.integers(1, 200))
    # Some windows opened exactly at the period's start, which is in the period.
    ages = st.one_of(st.integers(0, 250 * 1440), st.just(days * 1440), st.just(days * 1440 + 1))
    windows = draw(
        st.lists(
            st.builds(
                Window,
                buyer_id=st.sampled_from(BUYERS),
                opened_minutes_ago=ages,
                outcome=st.sampled_from(OUTCOMES),
                closed_minutes_later=st.integers(0, 3 * 1440),
            ),
            max_size=60,
        )
    )
    return days, windows


def _session(number: int, window: Window) -> PaymentSession:
    opened = NOW - timedelta(minutes=window.opened_minutes_ago)
    closed = opened + timedelta(minutes=window.closed_minutes_later)
    session = PaymentSession(
        id=f"pw_model_{number:04d}",
        auction_id=f"auc-model-{number}",
        maker_id="maker-1",
        buyer_id=window.buyer_id,
        amount=1_000,
        currency="eur",
        expires_at=opened + timedelta(days=1),
        created_at=opened,
        updated_at=closed,
    )
    if window.outcome == "awaiting":
        return replace(session, status=Status.AWAITING_PAYMENT_CONFIRMATION)
    if window.outcome == "paid":
        return replace(session, status=Status.PAID, paid_at=closed)
    if window.outcome == PAID_AFTER_CLOSE:
        return replace(session, status=Status.PAID, reason=PAID_AFTER_CLOSE, paid_at=closed)
    if window.outcome.startswith("expired:"):
        reason = window.outcome.removeprefix("expired:") or None
        return replace(session, status=Status.EXPIRED, reason=reason, expired_at=closed)
    return session


@pytest.fixture(params=["postgresql", "sqlite"])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    """A migrated store of each kind in turn."""
    chosen: Settings = request.getfixturevalue(
        "pg_settings" if request.param == "postgresql" else "sqlite_settings"
    )
    return chosen


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_settings)
    yield engine
    await engine.dispose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
async def test_records_and_repeat_non_payers_match_a_plain_model(
    store: AsyncEngine, history: tuple[int, list[Window]]
) -> None:
    days, windows = history
    sessions = [_session(number, window) for number, window in enumerate(windows)]
    async with store.begin() as connection:
        await connection.execute(delete(payment_sessions))
        if sessions:
            rows = [session_values(session) for session in sessions]
            await connection.execute(insert(payment_sessions), rows)
    operations = Operations(SqlReadModel(store), FixedClock())

    since = NOW - timedelta(days=days)
    counted = [s for s in sessions if s.created_at >= since]
    for buyer_id in BUYERS:
        mine = [s for s in counted if s.buyer_id == buyer_id]
        unpaid = [s for s in mine if s.status is Status.EXPIRED]
        record = await operations.buyer_record(buyer_id, ADMIN, days=days)
        assert record.opened == len(mine)
        assert record.paid == sum(s.status is Status.PAID for s in mine)
        assert record.unsettled == sum(
            s.status in (Status.OPEN, Status.AWAITING_PAYMENT_CONFIRMATION) for s in mine
        )
        by_reason = Counter({reason.value: 0 for reason in CloseReason})
        by_reason.update(s.reason or UNKNOWN_REASON for s in unpaid)
        assert record.unpaid_by_reason == dict(by_reason)
        assert record.unpaid == len(unpaid)
        if unpaid:
            last = max(unpaid, key=lambda s: (s.expired_at, s.id))
            assert record.last_unpaid is not None
            assert (record.last_unpaid.session_id, record.last_unpaid.closed_at) == (
                last.id,
                last.expired_at,
            )
            assert record.last_unpaid.reason == (last.reason or UNKNOWN_REASON)
        else:
            assert record.last_unpaid is None

    opened = Counter(s.buyer_id for s in counted)
    unpaid_by_buyer = Counter(s.buyer_id for s in counted if s.status is Status.EXPIRED)
    expected = sorted(unpaid_by_buyer.items(), key=lambda item: (-item[1], item[0]))
    listed = await operations.repeat_non_payers(ADMIN, days=days)
    assert [(e.buyer_id, e.unpaid, e.opened) for e in listed] == [
        (buyer_id, count, opened[buyer_id])
        for buyer_id, count in expected[:REPEAT_NON_PAYERS_SHOWN]
    ]
