"""Plain-text tables for `payment-window windows`, `audit` and `buyers`, and the maker policy
`payment-window policy` shows and changes.

The commands read the store directly (an operator with the database's credentials sees
everything, as an admin would) through the operations queries; no Redis, no Stripe.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from payment_window.adapters.clock import SystemClock
from payment_window.bootstrap import Container, bootstrap, default_policy
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.buyers import BuyerRecord, RepeatNonPayer
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.session import PaymentSession
from payment_window.domain.views import AuditRecord, WindowFilter
from payment_window.operations import MAX_PAGE
from payment_window.runner import running

OPERATOR = Actor(subject="cli", role=Role.ADMIN)
WINDOW_COLUMNS = (
    "ID",
    "AUCTION",
    "MAKER",
    "STATUS",
    "DEADLINE",
    "TIME LEFT",
    "ATTEMPTS",
    "ACCOUNT",
)
AUDIT_COLUMNS = ("TIME", "ACTION", "ACTOR", "STATUS", "DETAILS")
NON_PAYER_COLUMNS = ("BUYER", "UNPAID", "OPENED", "UNPAID SHARE")


@asynccontextmanager
async def operating(settings: Settings) -> AsyncIterator[Container]:
    """The wiring every operator command reads through, on the operator's own clock: the
    tables never touch Redis or Stripe (the container connects only to what is used)."""
    container = await bootstrap(settings, clock=SystemClock())
    try:
        yield container
    finally:
        await container.close()


async def maker_policy(
    settings: Settings, maker_id: str, changes: Mapping[str, object]
) -> tuple[ExtensionPolicy, bool]:
    """The maker's policy after `changes` (none: just read), and whether it is the maker's own
    row (False: the settings' defaults apply, as the API's GET says)."""
    # The deployment's own clock (not the operator's): the change is stamped like any other.
    async with running(settings) as container:
        own = await container.windows.own_policy(maker_id, OPERATOR)
        if not changes:
            return own or default_policy(settings), own is not None
        changed = replace(own or default_policy(settings), **changes)  # type: ignore[arg-type]
        # Through the use case, as the API's PUT: the admin rule, the audit entry, the log.
        await container.windows.set_policy(maker_id, changed, OPERATOR)
        return changed, True


def policy_lines(maker_id: str, policy: ExtensionPolicy, own: bool) -> list[str]:
    source = "its own" if own else "the defaults (PW_DEFAULT_*): no policy of its own"
    return [
        f"maker {maker_id}: {source}",
        f"  max extension minutes  {policy.max_extension_minutes}",
        f"  makers may override    {'yes' if policy.makers_may_override else 'no'}",
        f"  on expiry              {policy.on_expiry.value}",
    ]


@dataclass(frozen=True, slots=True)
class Listing:
    sessions: list[PaymentSession]
    now: datetime
    more: bool


async def read_windows(settings: Settings, query: WindowFilter, limit: int) -> Listing:
    """Up to `limit` windows matching `query`, by deadline, page by page from the store."""
    async with operating(settings) as container:
        sessions: list[PaymentSession] = []
        cursor: str | None = None
        now: datetime | None = None
        while True:
            page = await container.operations.windows(
                query, OPERATOR, limit=min(MAX_PAGE, limit - len(sessions)), cursor=cursor
            )
            now = now or page.now
            sessions += page.sessions
            cursor = page.next_cursor
            if cursor is None or len(sessions) >= limit:
                return Listing(sessions, now, more=cursor is not None)


async def read_audit(settings: Settings, session_id: str) -> list[AuditRecord]:
    async with operating(settings) as container:
        return await container.operations.audit_trail(session_id, OPERATOR)


async def read_repeat_non_payers(settings: Settings, days: int) -> list[RepeatNonPayer]:
    async with operating(settings) as container:
        return await container.operations.repeat_non_payers(OPERATOR, days=days)


async def read_buyer_record(settings: Settings, buyer_id: str, days: int) -> BuyerRecord:
    async with operating(settings) as container:
        return await container.operations.buyer_record(buyer_id, OPERATOR, days=days)


def duration(seconds: float) -> str:
    """`2 h 05 min`, `7 min`, `40 s`: whole units, hours with zero-padded minutes."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {rest // 60:02d} min"
    if total >= 60:
        return f"{total // 60} min"
    return f"{total} s"


def time_left(session: PaymentSession, now: datetime) -> str:
    """What an operator needs at a glance: time left, how late, or that it no longer runs."""
    if not session.is_open:
        return "-"
    left = (session.expires_at - now).total_seconds()
    if left >= 0:
        return duration(left)
    return f"overdue {duration(-left)}"


def local_time(moment: datetime, *, seconds: bool = False) -> str:
    """The operator's own zone: `Thu 26 Nov 14:05 CET`."""
    local = moment.astimezone()
    return local.strftime("%a %d %b %H:%M:%S %Z" if seconds else "%a %d %b %H:%M %Z")


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last one is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def windows_table(listing: Listing) -> list[str]:
    rows = [
        (
            session.id,
            session.auction_id,
            session.maker_id,
            session.status.value,
            local_time(session.expires_at),
            time_left(session, listing.now),
            str(session.expiry_attempts),
            account_label(session),
        )
        for session in listing.sessions
    ]
    return aligned(WINDOW_COLUMNS, rows)


def account_label(session: PaymentSession) -> str:
    """`acct_123 (direct)`, `acct_123 (destination)`, or `platform`; `attached` when the
    Checkout Session was made by another integration."""
    label = (
        f"{session.connect_account_id} ({session.connect_charge})"
        if session.connect_account_id
        else "platform"
    )
    return f"{label} attached" if session.attached else label


def compact(details: dict[str, object]) -> str:
    """`minutes=45 reason="bank holiday"`: scalars bare, text with spaces quoted."""
    parts = []
    for key, value in details.items():
        if isinstance(value, str) and value and " " not in value and '"' not in value:
            text = value
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def audit_table(trail: Sequence[AuditRecord]) -> list[str]:
    rows = [
        (
            local_time(record.at, seconds=True),
            record.action,
            record.actor,
            f"{record.from_status or '-'}→{record.to_status or '-'}",
            compact(record.details),
        )
        for record in trail
    ]
    return aligned(AUDIT_COLUMNS, rows)


def non_payers_table(non_payers: Sequence[RepeatNonPayer]) -> list[str]:
    rows = [
        (
            entry.buyer_id,
            str(entry.unpaid),
            str(entry.opened),
            f"{entry.unpaid / entry.opened:.0%}",
        )
        for entry in non_payers
    ]
    return aligned(NON_PAYER_COLUMNS, rows)


def buyer_record_lines(record: BuyerRecord) -> list[str]:
    """The record as an operator reads it: the headline, then the outcomes, then the last close."""
    lines = [
        f"{record.buyer_id}: {record.unpaid} of {record.opened} windows unpaid in "
        f"{record.period.days} days (opened since {local_time(record.period.since)})",
        "",
    ]
    outcomes = [("paid", str(record.paid)), ("still running", str(record.unsettled))]
    outcomes.append(("closed unpaid", str(record.unpaid)))
    outcomes += [
        (f"  {reason.replace('_', ' ')}", str(count))
        for reason, count in record.unpaid_by_reason.items()
        if count
    ]
    lines += aligned(("OUTCOME", "WINDOWS"), outcomes)
    last = record.last_unpaid
    if last is not None:
        lines += [
            "",
            f"last unpaid: {last.session_id}  auction {last.auction_id}  closed "
            f"{local_time(last.closed_at)}  ({last.reason.replace('_', ' ')})",
        ]
    return lines
