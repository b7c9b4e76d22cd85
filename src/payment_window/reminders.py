"""The buyer reminder of a window that came due, queued by the expiry task under the row lock."""

from __future__ import annotations

from datetime import datetime

from payment_window.domain import messages, times
from payment_window.domain.ports import UnitOfWork
from payment_window.domain.session import PaymentSession
from payment_window.pass_report import ACTOR
from payment_window.transitions import Transitions


class Reminders:
    """Queues each due buyer reminder once, with its audit entry."""

    def __init__(self, transitions: Transitions, offsets: tuple[int, ...]) -> None:
        self._t = transitions
        self._offsets = offsets

    def due(self, session: PaymentSession, now: datetime) -> bool:
        """A reminder is due and the window itself is not (a closed window is not reminded)."""
        return not session.is_due(now) and session.reminder_due(now)

    def send(self, uow: UnitOfWork, session: PaymentSession, now: datetime) -> PaymentSession:
        """Queue the buyer reminder that came due; the row lock makes it go out once."""
        reminded, offset = session.send_reminder(self._offsets, now)
        uow.record(
            self._t.audit(
                reminded,
                "reminder_sent",
                ACTOR,
                session.status,
                {"reminderMinutes": offset, "expiresAt": times.iso(session.expires_at)},
            ),
            [messages.on_reminder(reminded, offset, now)],
        )
        return reminded
