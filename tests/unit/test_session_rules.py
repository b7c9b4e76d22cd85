"""The payment session's rules: transitions, extension policy, time left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_window.domain.errors import (
    ExtensionExceedsPolicy,
    InvalidTransition,
    InvalidWindow,
    WindowElapsed,
    WindowNotOpen,
)
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    CloseReason,
    PaymentSession,
    Status,
)

NOW = datetime(2026, 1, 15, 14, 45, tzinfo=UTC)
POLICY = ExtensionPolicy(
    max_extension_minutes=120, makers_may_override=False, on_expiry=OnExpiry.RELIST
)


def a_session(**changes: object) -> PaymentSession:
    fields: dict[str, object] = {
        "id": "pw_1",
        "auction_id": "auc_1",
        "maker_id": "mk_1",
        "buyer_id": "by_1",
        "amount": 12_500,
        "currency": "eur",
        "expires_at": NOW + timedelta(hours=24),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return PaymentSession(**fields)  # type: ignore[arg-type]


def test_remaining_time_counts_whole_seconds_up_to_the_deadline() -> None:
    session = a_session(expires_at=NOW + timedelta(seconds=90, milliseconds=200))
    assert session.remaining_seconds(NOW) == 91
    assert session.remaining_seconds(NOW + timedelta(seconds=90, milliseconds=200)) == 0
    assert session.remaining_seconds(NOW + timedelta(days=3)) == 0


def test_a_closed_window_has_no_time_left() -> None:
    closed = a_session().expire(CloseReason.ADMIN_TERMINATED, NOW)
    assert closed.remaining_seconds(NOW) == 0


def test_a_window_is_due_only_once_its_deadline_passed() -> None:
    session = a_session(expires_at=NOW)
    assert not session.is_due(NOW - timedelta(microseconds=1))
    assert session.is_due(NOW)


def test_expiry_records_when_and_why() -> None:
    closed = a_session().expire(CloseReason.WINDOW_ELAPSED, NOW)
    assert closed.status is Status.EXPIRED
    assert closed.expired_at == NOW
    assert closed.reason == "window_elapsed"
    assert closed.version == 2


def test_a_closed_window_cannot_be_closed_again() -> None:
    closed = a_session().expire(CloseReason.WINDOW_ELAPSED, NOW)
    with pytest.raises(WindowNotOpen):
        closed.expire(CloseReason.WINDOW_ELAPSED, NOW)


def test_a_paid_window_cannot_be_extended() -> None:
    paid = a_session().record_payment(NOW, confirmed=True)
    with pytest.raises(WindowNotOpen):
        paid.extend(10, POLICY, NOW)


def test_a_delayed_payment_stops_the_window_until_confirmed() -> None:
    pending = a_session().record_payment(NOW, confirmed=False)
    assert pending.status is Status.AWAITING_PAYMENT_CONFIRMATION
    assert pending.remaining_seconds(NOW) == 0
    assert not pending.is_due(NOW + timedelta(days=2))
    assert pending.record_payment(NOW, confirmed=True).status is Status.PAID


def test_extension_past_policy_is_refused_naming_what_is_left() -> None:
    session = a_session().extend(100, POLICY, NOW)
    with pytest.raises(ExtensionExceedsPolicy) as refused:
        session.extend(21, POLICY, NOW)
    assert refused.value.still_allowed == 20
    assert "20 minutes" in str(refused.value)
    assert session.extend(20, POLICY, NOW).extended_minutes == 120


@pytest.mark.parametrize("minutes", [0, -5, 10_081])
def test_extension_minutes_must_be_sensible(minutes: int) -> None:
    with pytest.raises(InvalidWindow):
        a_session().extend(minutes, ExtensionPolicy(100_000, True, OnExpiry.RELIST), NOW)


def test_a_window_that_outlives_its_stripe_session_needs_a_new_one() -> None:
    session = a_session(checkout_expires_at=NOW + timedelta(hours=24))
    assert not session.outlives_checkout()
    assert session.extend(1, POLICY, NOW).outlives_checkout()


def test_payment_reported_after_expiry_is_recorded() -> None:
    closed = a_session().expire(CloseReason.WINDOW_ELAPSED, NOW)
    paid = closed.record_late_payment(NOW + timedelta(seconds=1))
    assert paid.status is Status.PAID
    assert paid.version == closed.version + 1


def test_paid_and_expired_are_the_final_statuses() -> None:
    assert {Status.PAID, Status.EXPIRED} == FINAL_STATUSES


def test_an_impossible_transition_is_refused() -> None:
    pending = a_session().record_payment(NOW, confirmed=False)
    with pytest.raises(InvalidTransition):
        pending.record_payment(NOW, confirmed=False)


# --- properties --------------------------------------------------------------------------------


def _change(session: PaymentSession, step: str, minutes: int) -> PaymentSession:
    generous = ExtensionPolicy(10_000_000, True, OnExpiry.RELIST)
    if step == "extend":
        return session.extend(minutes, generous, NOW)
    if step == "expire":
        return session.expire(CloseReason.WINDOW_ELAPSED, NOW)
    if step == "pay":
        return session.record_payment(NOW, confirmed=True)
    return session.record_payment(NOW, confirmed=False)


@given(
    st.lists(
        st.tuples(st.sampled_from(["extend", "expire", "pay", "pend"]), st.integers(1, 10_080)),
        max_size=12,
    )
)
def test_every_change_bumps_the_version_and_none_leaves_a_final_status(
    steps: list[tuple[str, int]],
) -> None:
    session = a_session()
    for step, minutes in steps:
        try:
            changed = _change(session, step, minutes)
        except (WindowNotOpen, InvalidTransition):
            continue
        assert session.status not in FINAL_STATUSES, f"{step} changed a {session.status} session"
        assert changed.version == session.version + 1
        assert changed.status in ALLOWED_TRANSITIONS[session.status] | {session.status}
        session = changed


@given(
    expires_in=st.floats(min_value=-1e7, max_value=1e7, allow_nan=False),
    elapsed=st.floats(min_value=0, max_value=1e7, allow_nan=False),
)
def test_time_left_is_never_negative_and_never_grows(expires_in: float, elapsed: float) -> None:
    session = a_session(expires_at=NOW + timedelta(seconds=expires_in))
    earlier = session.remaining_seconds(NOW)
    later = session.remaining_seconds(NOW + timedelta(seconds=elapsed))
    assert 0 <= later <= earlier
    assert earlier - later <= elapsed + 1


@given(st.lists(st.integers(1, 600), max_size=20), st.integers(0, 3000))
def test_total_extension_never_exceeds_the_policy(requests: list[int], maximum: int) -> None:
    policy = ExtensionPolicy(maximum, False, OnExpiry.RELIST)
    session = a_session()
    for minutes in requests:
        try:
            session = session.extend(minutes, policy, NOW)
        except ExtensionExceedsPolicy as refused:
            assert refused.still_allowed == maximum - session.extended_minutes
    assert session.extended_minutes <= maximum
    assert session.expires_at == NOW + timedelta(hours=24, minutes=session.extended_minutes)


# --- reminders ---------------------------------------------------------------------------------

OFFSETS = (720, 60)


def test_the_first_reminder_is_the_earliest_offset_inside_the_window() -> None:
    session = a_session().with_reminders_planned(OFFSETS)
    assert session.next_reminder_at == session.expires_at - timedelta(minutes=720)


def test_an_offset_longer_than_the_window_is_never_planned() -> None:
    session = a_session(expires_at=NOW + timedelta(hours=2)).with_reminders_planned(OFFSETS)
    assert session.next_reminder_at == session.expires_at - timedelta(minutes=60)


def test_sending_a_reminder_plans_the_next_and_the_last_plans_none() -> None:
    session = a_session().with_reminders_planned(OFFSETS)
    first, offset = session.send_reminder(OFFSETS, session.next_reminder_at)  # type: ignore[arg-type]
    assert offset == 720
    assert first.next_reminder_at == first.expires_at - timedelta(minutes=60)
    last, offset = first.send_reminder(OFFSETS, first.next_reminder_at)  # type: ignore[arg-type]
    assert offset == 60
    assert last.next_reminder_at is None
    assert last.reminders_sent == (60, 720)


def test_reminders_missed_together_send_only_the_nearest_to_the_deadline() -> None:
    session = a_session().with_reminders_planned(OFFSETS)
    late = session.expires_at - timedelta(minutes=30)
    sent, offset = session.send_reminder(OFFSETS, late)
    assert offset == 60
    assert sent.next_reminder_at is None


def test_an_extension_replans_unsent_reminders_but_never_repeats_a_sent_one() -> None:
    session = a_session().with_reminders_planned(OFFSETS)
    sent, _ = session.send_reminder(OFFSETS, session.next_reminder_at)  # type: ignore[arg-type]
    extended = sent.extend(120, POLICY, NOW).with_reminders_planned(OFFSETS)
    assert extended.next_reminder_at == extended.expires_at - timedelta(minutes=60)
    assert 720 in extended.reminders_sent


def test_a_closed_window_plans_no_reminder() -> None:
    closed = a_session().expire(CloseReason.WINDOW_ELAPSED, NOW).with_reminders_planned(OFFSETS)
    assert closed.next_reminder_at is None
    assert not closed.reminder_due(NOW + timedelta(days=2))


def test_the_expiry_task_looks_at_a_window_at_its_next_reminder() -> None:
    session = a_session().with_reminders_planned(OFFSETS)
    assert session.due_at == session.next_reminder_at


def test_with_reminders_off_a_window_is_due_at_its_deadline() -> None:
    session = a_session(checkout_expires_at=NOW + timedelta(hours=24))
    assert not session.outlives_checkout()
    assert session.due_at == session.expires_at
    assert not session.needs_new_checkout(session.expires_at - timedelta(minutes=5))


def test_a_window_outliving_its_stripe_session_is_due_before_that_session_ends() -> None:
    session = a_session(
        expires_at=NOW + timedelta(hours=30), checkout_expires_at=NOW + timedelta(hours=24)
    )
    assert session.due_at == NOW + timedelta(hours=24) - timedelta(minutes=10)
    assert session.needs_new_checkout(session.due_at)


def test_a_window_past_its_deadline_cannot_be_extended() -> None:
    session = a_session()
    with pytest.raises(WindowElapsed):
        session.extend(30, POLICY, session.expires_at)
    with pytest.raises(WindowElapsed):
        session.extend(30, POLICY, session.expires_at + timedelta(milliseconds=5))
    assert session.extend(30, POLICY, session.expires_at - timedelta(milliseconds=5)).is_open


def test_a_payment_awaiting_confirmation_is_looked_at_again_later() -> None:
    awaiting = a_session().record_payment(NOW, confirmed=False, recheck_after=timedelta(minutes=60))
    assert awaiting.is_scheduled
    assert awaiting.due_at == NOW + timedelta(minutes=60)
    assert not awaiting.confirmation_check_due(NOW + timedelta(minutes=59))
    assert awaiting.confirmation_check_due(NOW + timedelta(minutes=60))
    paid = awaiting.record_payment(NOW, confirmed=True)
    assert not paid.is_scheduled


def test_a_late_payment_says_so_in_its_reason() -> None:
    closed = a_session().expire(CloseReason.WINDOW_ELAPSED, NOW)
    paid = closed.record_late_payment(NOW, "cs_2")
    assert (paid.status, paid.reason, paid.checkout_session_id) == (
        Status.PAID,
        "paid_after_close",
        "cs_2",
    )
