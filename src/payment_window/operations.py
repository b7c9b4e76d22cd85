"""The operations view: every window, the figures that say whether expiry keeps up, audit trails.

Read-only, straight from the store (the truth; the Redis index is never asked), through the
read model port; this module holds the access checks and the paging.

Listing pages with a keyset on `(expires_at, id)`, ascending; the cursor is the last row handed
out. A row whose key does not change while someone pages is therefore seen exactly once, however
many rows are added or removed around it. Rows whose deadline moves are the exception, and
only deadlines that move *later* exist (extensions): such a row not yet reached is seen once,
at its new deadline; one already handed out that moves past the cursor is handed out again, at
its new deadline and with a higher `version` (keep the higher one). New windows whose deadline
is behind the cursor, and rows that stop matching the filters (a window that closes while one
pages `status=open`), are not seen: the next listing from the start has them right.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from payment_window.domain import access
from payment_window.domain.access import Actor
from payment_window.domain.buyers import (
    DEFAULT_DAYS,
    REPEAT_NON_PAYERS_SHOWN,
    BuyerRecord,
    Period,
    RepeatNonPayer,
)
from payment_window.domain.errors import DomainError, OverrideNotAllowed, SessionNotFound
from payment_window.domain.ports import Clock, ReadModel, WebhookEndpointsView
from payment_window.domain.session import PaymentSession
from payment_window.domain.times import read_aware_utc
from payment_window.domain.views import AuditRecord, EndpointStatus, Summary, WindowFilter

MAX_PAGE = 200
DEFAULT_PAGE = 50


class InvalidCursor(DomainError):
    """A cursor this service did not hand out, or handed out for another query."""

    code = "invalid_cursor"


@dataclass(frozen=True, slots=True)
class WindowPage:
    """One page of windows, the instant it was read, and where the next page starts."""

    sessions: list[PaymentSession]
    next_cursor: str | None
    now: datetime


def encode_cursor(expires_at: datetime, session_id: str, query: WindowFilter) -> str:
    text = json.dumps([expires_at.astimezone(UTC).isoformat(), session_id, query.fingerprint()])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# The ids we hand out; a NUL or other control character would only fail in the store.
_CURSOR_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def decode_cursor(cursor: str, query: WindowFilter) -> tuple[datetime, str]:
    """The `(expires_at, id)` a cursor stands for; InvalidCursor if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, session_id, fingerprint = json.loads(raw)
        expires_at = read_aware_utc(at)
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidCursor("the cursor is not one this service handed out") from None
    if (
        expires_at is None
        or not isinstance(session_id, str)
        or not _CURSOR_ID.fullmatch(session_id)
    ):
        raise InvalidCursor("the cursor is not one this service handed out")
    if fingerprint != query.fingerprint():
        raise InvalidCursor("the cursor belongs to a listing with other filters")
    return expires_at, session_id


class Operations:
    """Read-only queries for operators: list windows, sum them up, read a session's trail."""

    def __init__(
        self,
        read_model: ReadModel,
        clock: Clock,
        endpoints: WebhookEndpointsView | None = None,
        endpoint_urls: Sequence[str] = (),
    ) -> None:
        """`endpoints` and `endpoint_urls`: the outgoing webhook endpoints configured."""
        self._read = read_model
        self._clock = clock
        self._endpoints = endpoints
        self._endpoint_urls = tuple(endpoint_urls)

    async def windows(
        self,
        query: WindowFilter,
        viewer: Actor,
        *,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> WindowPage:
        """A page of windows matching `query`, by deadline then id (see the module's notes)."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may list payment windows")
        limit = max(1, min(MAX_PAGE, limit))
        now = self._clock.now()
        after = decode_cursor(cursor, query) if cursor is not None else None
        found = await self._read.windows(query, now, after, limit + 1)
        sessions = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last = sessions[-1]
            next_cursor = encode_cursor(last.expires_at, last.id, query)
        return WindowPage(sessions, next_cursor, now)

    async def summary(self, viewer: Actor, *, days: int = DEFAULT_DAYS) -> Summary:
        """How many windows are open, due soon, overdue, stuck at Stripe; what closed lately;
        and the buyers who let the most windows opened in the last `days` days close unpaid."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may read the operations summary")
        figures = await self._read.summary(self._clock.now())
        non_payers = await self.repeat_non_payers(viewer, days=days)
        return replace(figures, buyer_period_days=days, repeat_non_payers=tuple(non_payers))

    async def webhook_endpoints(self, viewer: Actor) -> list[EndpointStatus]:
        """Each configured webhook endpoint: state, last success, failures, backlog (admins)."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may read the webhook endpoints")
        if self._endpoints is None or not self._endpoint_urls:
            return []
        return await self._endpoints.statuses(self._endpoint_urls)

    async def repeat_non_payers(
        self, viewer: Actor, *, days: int = DEFAULT_DAYS
    ) -> list[RepeatNonPayer]:
        """The buyers who let the most windows opened in the last `days` days close unpaid."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may read buyers' payment records")
        period = Period.last(days, self._clock.now())
        return await self._read.repeat_non_payers(period, REPEAT_NON_PAYERS_SHOWN)

    async def buyer_record(
        self, buyer_id: str, viewer: Actor, *, days: int = DEFAULT_DAYS
    ) -> BuyerRecord:
        """The buyer's windows opened in the last `days` days: paid, closed unpaid and why,
        still running, and the last one closed unpaid (admin only). A buyer the store has never
        seen has an empty record, not a 404: "no windows" is the answer."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may read a buyer's payment record")
        return await self._read.buyer_record(buyer_id, Period.last(days, self._clock.now()))

    async def audit_trail(self, session_id: str, viewer: Actor) -> list[AuditRecord]:
        """The session's history, oldest first: admins, and the session's maker.

        Buyers and services are refused by role (403) before anything is looked up; a maker
        asking about another maker's session learns nothing: it does not exist for them (404).
        """
        if not access.may_read_audit_of_some(viewer):
            raise OverrideNotAllowed(f"a {viewer.role.value} may not read audit trails")
        session = await self._read.session(session_id)
        if session is None or not access.may_read_audit(viewer, session):
            raise SessionNotFound(session_id)
        return await self._read.audit_trail(session_id)


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2h30m`, `1d` (for the command line)."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    total, number = 0, ""
    for char in text.strip().lower():
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (try 30m, 1h, 2h30m)")
    if number or total <= 0:
        raise ValueError(f"not a duration: {text!r} (try 30m, 1h, 2h30m)")
    return timedelta(seconds=total)
