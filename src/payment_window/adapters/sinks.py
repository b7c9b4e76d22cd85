"""The relay's sinks, one per configured destination.

maker → `PW_SNS_MAKER_TOPIC_ARN` (attribute `makerId`), buyer → `PW_SNS_BUYER_TOPIC_ARN`
(attribute `buyerId`), auction → `PW_AUCTION_EVENTS_TOPIC_ARN`, analytics → Segment
(`PW_SEGMENT_WRITE_KEY`). Operations alerts share the auction-events topic: its subscribers
filter on the `event` attribute (operations events are named `operations.*`), which saves a
topic that would carry a handful of messages a day. A destination left unconfigured has no sink
and its messages wait in the outbox until it is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from payment_window.adapters.segment import SegmentOptions, SegmentSink, create_segment_client
from payment_window.adapters.sns import SnsOptions, SnsSink, create_sns_client
from payment_window.adapters.webhook import (
    EndpointState,
    WebhookOptions,
    WebhookSink,
    create_webhook_client,
)
from payment_window.config import Settings
from payment_window.domain.events import Destination
from payment_window.domain.ports import Clock, Metrics, Sink

if TYPE_CHECKING:
    from mypy_boto3_sns.client import SNSClient

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """Vendor client retries and timeouts (tests shorten them)."""

    sns: SnsOptions = field(default_factory=SnsOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    webhook: WebhookOptions = field(default_factory=WebhookOptions)


def create_sinks(settings: Settings, options: SinkOptions | None = None) -> dict[str, Sink]:
    """A sink for each configured integration; each one that is off says so once."""
    options = options or SinkOptions()
    sinks: dict[str, Sink] = {}
    topics = (
        (Destination.MAKER, settings.sns_maker_topic_arn, "PW_SNS_MAKER_TOPIC_ARN", "makerId"),
        (Destination.BUYER, settings.sns_buyer_topic_arn, "PW_SNS_BUYER_TOPIC_ARN", "buyerId"),
        (
            Destination.AUCTION,
            settings.auction_events_topic_arn,
            "PW_AUCTION_EVENTS_TOPIC_ARN",
            None,
        ),
    )
    client: SNSClient | None = None
    for destination, arn, variable, party in topics:
        if not arn:
            integration = f"sns_{destination.value}"
            log.info("integration_off", integration=integration, hint=f"set {variable}")
            continue
        client = client or create_sns_client(settings, options.sns)
        sinks[destination] = SnsSink(arn, client, party)
    if Destination.AUCTION in sinks:
        sinks[Destination.OPERATIONS] = sinks[Destination.AUCTION]
    if settings.segment_write_key is None:
        log.info("integration_off", integration="segment", hint="set PW_SEGMENT_WRITE_KEY")
    else:
        segment = create_segment_client(
            settings.segment_write_key.get_secret_value(), settings.segment_host, options.segment
        )
        sinks[Destination.ANALYTICS] = SegmentSink(segment)
    return sinks


def create_webhook_sinks(
    settings: Settings,
    state: EndpointState,
    clock: Clock,
    metrics: Metrics,
    options: SinkOptions | None = None,
) -> list[WebhookSink]:
    """One sink per `PW_WEBHOOK_ENDPOINTS` URL (each its own outbox destination), sharing one
    HTTP client; none, said once, when webhooks are off."""
    options = options or SinkOptions()
    if not settings.webhook_endpoints:
        log.info("integration_off", integration="webhooks", hint="set PW_WEBHOOK_ENDPOINTS")
        return []
    if not settings.webhook_secrets:
        # require_for refuses this at start-up; a relay built without it holds the messages.
        log.warning("webhooks_unsigned_held", hint="set PW_WEBHOOK_SECRET")
        return []
    client = create_webhook_client(options.webhook)
    return [
        WebhookSink(url, settings.webhook_secrets, client, state, clock, metrics, options.webhook)
        for url in settings.webhook_endpoints
    ]
