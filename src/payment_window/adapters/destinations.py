"""Which outbox destinations a deployment delivers to, from its settings alone (no SDK import:
the API process needs the answer, not the clients)."""

from __future__ import annotations

from payment_window.config import Settings
from payment_window.domain.events import Destination


def configured_destinations(settings: Settings) -> frozenset[Destination]:
    """The destinations `sinks.create_sinks` makes a sink for with these settings."""
    configured = {
        destination
        for destination, arn in (
            (Destination.MAKER, settings.sns_maker_topic_arn),
            (Destination.BUYER, settings.sns_buyer_topic_arn),
            (Destination.AUCTION, settings.auction_events_topic_arn),
            (Destination.OPERATIONS, settings.auction_events_topic_arn),
        )
        if arn
    }
    if settings.segment_write_key is not None:
        configured.add(Destination.ANALYTICS)
    return frozenset(configured)
