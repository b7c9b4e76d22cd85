"""How a use case tells the Stripe gateway what sort of call it is about to make.

Every Stripe call of the deployment spends one budget. Buyer-facing calls (a create, the
replacement an extension makes, a terminate) go first; background calls (expiry, re-checks,
expiring rotated-away sessions) use what is left. A call made while a row is locked is bounded
and never retried inside the lock. The use cases say so with these context managers; the gateway
reads them at the one place every call passes (no method signature carries them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum


class CallClass(StrEnum):
    BUYER = "buyer"
    BACKGROUND = "background"


_class: ContextVar[CallClass] = ContextVar("stripe_call_class", default=CallClass.BUYER)
_locked: ContextVar[bool] = ContextVar("stripe_call_under_row_lock", default=False)
# A one-element holder, set inside the task that spends it: True while a budget slot taken
# before the row was locked is still unspent.
_prepaid: ContextVar[list[bool] | None] = ContextVar("stripe_call_prepaid", default=None)


def call_class() -> CallClass:
    return _class.get()


def holding_row_lock() -> bool:
    return _locked.get()


def take_prepaid() -> bool:
    """True once for a call whose budget slot was taken before its row was locked."""
    holder = _prepaid.get()
    if holder and holder[0]:
        holder[0] = False
        return True
    return False


@contextmanager
def background() -> Iterator[None]:
    """Calls made inside are background calls: they use what buyer-facing calls leave."""
    token = _class.set(CallClass.BACKGROUND)
    try:
        yield
    finally:
        _class.reset(token)


@contextmanager
def under_row_lock(*, prepaid: bool = False) -> Iterator[None]:
    """Calls made inside hold a row lock: bounded, never retried inside the lock. `prepaid`:
    the caller took the first call's budget slot before it locked the row."""
    locked = _locked.set(True)
    holder = _prepaid.set([prepaid])
    try:
        yield
    finally:
        _prepaid.reset(holder)
        _locked.reset(locked)
