"""What a viewer sees of a window at one instant, from the store or from the index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_window.domain import window
from payment_window.domain.session import CloseReason, Status


class Viewed(Protocol):
    """What a status is made of: a stored session or the index's snapshot of one."""

    @property
    def session_id(self) -> str: ...
    @property
    def auction_id(self) -> str: ...
    @property
    def maker_id(self) -> str: ...
    @property
    def buyer_id(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> Status: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def version(self) -> int: ...
    @property
    def reason(self) -> CloseReason | None: ...
    @property
    def checkout_url(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WindowStatus:
    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    status: Status
    expires_at: datetime
    remaining_seconds: int
    server_time: datetime
    version: int
    reason: CloseReason | None
    checkout_url: str | None

    @classmethod
    def of(cls, viewed: Viewed, now: datetime) -> WindowStatus:
        """The window as its viewers see it at `now`: time runs only while it is open."""
        is_open = viewed.status is Status.OPEN
        return cls(
            session_id=viewed.session_id,
            auction_id=viewed.auction_id,
            maker_id=viewed.maker_id,
            buyer_id=viewed.buyer_id,
            amount=viewed.amount,
            currency=viewed.currency,
            status=viewed.status,
            expires_at=viewed.expires_at,
            remaining_seconds=window.remaining_seconds(viewed.expires_at, now) if is_open else 0,
            server_time=now,
            version=viewed.version,
            reason=viewed.reason,
            checkout_url=viewed.checkout_url,
        )
