"""Who may see and change a payment window."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from payment_window.domain.policy import ExtensionPolicy


class Role(StrEnum):
    ADMIN = "admin"
    MAKER = "maker"
    BUYER = "buyer"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Actor:
    """The verified caller: a token's subject, role and (for makers) maker id."""

    subject: str
    role: Role
    maker_id: str | None = None

    @property
    def label(self) -> str:
        """How the audit log names this actor."""
        return f"{self.role.value}:{self.subject}"


SYSTEM_EXPIRY = "system:expiry"
SYSTEM_STRIPE = "system:stripe"


class Owned(Protocol):
    """What a session exposes for ownership checks (a session or its index snapshot)."""

    @property
    def buyer_id(self) -> str: ...

    @property
    def maker_id(self) -> str: ...


def may_view(actor: Actor, session: Owned) -> bool:
    """Admins see every window; a buyer their own; a maker their auctions'."""
    if actor.role is Role.ADMIN:
        return True
    if actor.role is Role.BUYER:
        return actor.subject == session.buyer_id
    if actor.role is Role.MAKER:
        return actor.maker_id is not None and actor.maker_id == session.maker_id
    return False


def may_override(actor: Actor, session: Owned, policy: ExtensionPolicy) -> bool:
    """Admins always; a maker on their own auctions when their policy lets makers override."""
    if actor.role is Role.ADMIN:
        return True
    return (
        actor.role is Role.MAKER
        and actor.maker_id is not None
        and actor.maker_id == session.maker_id
        and policy.makers_may_override
    )


def may_open(actor: Actor) -> bool:
    return actor.role in (Role.SERVICE, Role.ADMIN)


def may_read_policy(actor: Actor, maker_id: str) -> bool:
    return actor.role is Role.ADMIN or (actor.role is Role.MAKER and actor.maker_id == maker_id)


def may_operate(actor: Actor) -> bool:
    """The operations view (every window, the summary) is for admins only."""
    return actor.role is Role.ADMIN


def may_read_audit_of_some(actor: Actor) -> bool:
    """Roles that may read audit trails at all: buyers and services never may."""
    return actor.role in (Role.ADMIN, Role.MAKER)


def may_read_audit(actor: Actor, session: Owned) -> bool:
    """A session's audit trail: admins, and the maker whose auction it is."""
    if actor.role is Role.ADMIN:
        return True
    return (
        actor.role is Role.MAKER
        and actor.maker_id is not None
        and actor.maker_id == session.maker_id
    )
