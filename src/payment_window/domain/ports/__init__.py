"""The interfaces the use cases need, by area; adapters implement them.

Import them from here (`payment_window.domain.ports`): the modules below only group them.
"""

from payment_window.domain.ports.delivery import (
    ChangeFeed,
    ChangeSubscription,
    ChangeSubscriptions,
    DeliveryFailed,
    LiveChanges,
    OutboxStore,
    Sink,
    WebhookEndpointsView,
    WindowChange,
)
from payment_window.domain.ports.index import Claim, WindowIndex, WindowSnapshot
from payment_window.domain.ports.reads import ReadModel
from payment_window.domain.ports.runtime import Clock, Metrics, Reachable
from payment_window.domain.ports.store import (
    PolicyRepository,
    Retention,
    SessionRepository,
    StripeEventRepository,
    UnitOfWork,
    UnitOfWorkFactory,
    UnreadableWindow,
)
from payment_window.domain.ports.stripe import (
    CheckoutGateway,
    CheckoutSession,
    CheckoutStatus,
    PaymentIntentStatus,
    PaymentStatus,
    RateLimiter,
    StripeBudget,
)

__all__ = [
    "ChangeFeed",
    "ChangeSubscription",
    "ChangeSubscriptions",
    "CheckoutGateway",
    "CheckoutSession",
    "CheckoutStatus",
    "Claim",
    "Clock",
    "DeliveryFailed",
    "LiveChanges",
    "Metrics",
    "OutboxStore",
    "PaymentIntentStatus",
    "PaymentStatus",
    "PolicyRepository",
    "RateLimiter",
    "Reachable",
    "ReadModel",
    "Retention",
    "SessionRepository",
    "Sink",
    "StripeBudget",
    "StripeEventRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UnreadableWindow",
    "WebhookEndpointsView",
    "WindowChange",
    "WindowIndex",
    "WindowSnapshot",
]
