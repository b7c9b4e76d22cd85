"""What one expiry pass did, counted by every step of it, and the actor its changes carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payment_window.domain import access

ACTOR = access.SYSTEM_EXPIRY


@dataclass
class PassReport:
    """What one pass did, for the CLI, the Lambda's response and the logs."""

    claimed: int = 0
    expired: int = 0
    paid: int = 0
    rescheduled: int = 0
    rotated: int = 0
    reminded: int = 0
    rechecked: int = 0
    retried: int = 0
    dropped: int = 0
    reindexed: int = 0
    set_aside: int = 0
    expired_other: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
