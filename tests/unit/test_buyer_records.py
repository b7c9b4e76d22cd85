"""The buyer record's rules: what counts as paid, unpaid and running; the period's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payment_window.domain.buyers import (
    MAX_DAYS,
    BuyerRecord,
    InvalidPeriod,
    OutcomeCount,
    Period,
    UnpaidWindow,
)
from payment_window.domain.session import PAID_AFTER_CLOSE, CloseReason, Status

NOW = datetime(2030, 1, 31, 12, tzinfo=UTC)


def test_a_period_is_the_last_days_up_to_now() -> None:
    period = Period.last(90, NOW)
    assert (period.days, period.until, period.since) == (90, NOW, NOW - timedelta(days=90))
    assert Period.last(MAX_DAYS, NOW).since == NOW - timedelta(days=3650)


@pytest.mark.parametrize("days", [0, -1, MAX_DAYS + 1])
def test_a_period_outside_one_day_to_ten_years_is_refused(days: int) -> None:
    with pytest.raises(InvalidPeriod, match="from 1 to 3650"):
        Period.last(days, NOW)


def test_the_record_folds_counts_by_status_and_reason() -> None:
    last = UnpaidWindow("pw_9", "auc-9", NOW, CloseReason.ADMIN_TERMINATED.value)
    record = BuyerRecord.of(
        "by-1",
        Period.last(90, NOW),
        [
            OutcomeCount(Status.PAID, None, 3),
            OutcomeCount(Status.PAID, PAID_AFTER_CLOSE, 1),
            OutcomeCount(Status.OPEN, None, 1),
            OutcomeCount(Status.AWAITING_PAYMENT_CONFIRMATION, None, 2),
            OutcomeCount(Status.EXPIRED, CloseReason.WINDOW_ELAPSED.value, 4),
            OutcomeCount(Status.EXPIRED, CloseReason.ADMIN_TERMINATED.value, 1),
            OutcomeCount(Status.EXPIRED, None, 2),
        ],
        last,
    )
    assert (record.opened, record.paid, record.unsettled, record.unpaid) == (14, 4, 3, 7)
    assert record.unpaid_by_reason == {
        **{reason.value: 0 for reason in CloseReason},
        "window_elapsed": 4,
        "admin_terminated": 1,
        "unknown": 2,
    }
    assert record.last_unpaid == last


def test_a_buyer_with_no_windows_has_every_reason_at_zero() -> None:
    record = BuyerRecord.of("by-new", Period.last(30, NOW), [], None)
    assert (record.opened, record.unpaid, record.last_unpaid) == (0, 0, None)
    assert set(record.unpaid_by_reason) == {reason.value for reason in CloseReason}
