"""The maker's extension policy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OnExpiry(StrEnum):
    """What the auction does when a window closes unpaid."""

    RELIST = "relist"
    NOTIFY_MAKER = "notify_maker"
    # The auction service offers the item to the next bidder (eBay's second-chance offer); it
    # decides who, this service only says the winner did not pay.
    OFFER_NEXT_BIDDER = "offer_next_bidder"


@dataclass(frozen=True, slots=True)
class ExtensionPolicy:
    """How far a maker's windows may be extended, and by whom."""

    max_extension_minutes: int
    makers_may_override: bool
    on_expiry: OnExpiry

    def as_dict(self) -> dict[str, object]:
        """The policy as the API spells it (the audit's before and after)."""
        return {
            "maxExtensionMinutes": self.max_extension_minutes,
            "makersMayOverride": self.makers_may_override,
            "onExpiry": self.on_expiry.value,
        }

    def minutes_still_allowed(self, already_extended: int) -> int:
        """Minutes of extension left over a session's whole life (never negative)."""
        return max(0, self.max_extension_minutes - already_extended)
