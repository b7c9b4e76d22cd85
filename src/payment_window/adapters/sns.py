"""SNS: publishes outbox messages to a topic with attributes subscriptions can filter on."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from payment_window.config import Settings
from payment_window.domain.events import OutboxEnvelope
from payment_window.domain.ports import DeliveryFailed
from payment_window.domain.times import iso

if TYPE_CHECKING:
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


@dataclass(frozen=True, slots=True)
class SnsOptions:
    """botocore's own retries and timeouts; the outbox retries past them, so keep them short."""

    max_attempts: int = 3
    connect_timeout: float = 2.0
    read_timeout: float = 5.0


def create_sns_client(settings: Settings, options: SnsOptions = SnsOptions()) -> SNSClient:
    """A boto3 SNS client for the configured region and endpoint (moto or LocalStack in tests)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": options.max_attempts},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
    )
    client: SNSClient = boto3.client(
        "sns",
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.aws_region,
        config=config,
    )
    return client


def sns_body(message: OutboxEnvelope) -> dict[str, Any]:
    """The JSON body: event id, type and time first, then the message's own fields."""
    body: dict[str, Any] = {
        "eventId": message.id,
        "event": message.event_type,
        "occurredAt": iso(message.created_at),
    }
    body.update({key: value for key, value in message.payload.items() if key not in body})
    return body


class SnsSink:
    """One topic. Attributes `event`, `eventId`, `sessionId`, `auctionId`, plus the party's id
    (`makerId` on the maker topic, `buyerId` on the buyer topic) when `party_attribute` names it.
    """

    def __init__(
        self, topic_arn: str, client: SNSClient, party_attribute: str | None = None
    ) -> None:
        self.topic_arn = topic_arn
        self._client = client
        self._party_attribute = party_attribute
        self._fifo = topic_arn.endswith(".fifo")

    def attributes(self, message: OutboxEnvelope) -> dict[str, MessageAttributeValueTypeDef]:
        values: dict[str, Any] = {
            "event": message.event_type,
            "eventId": message.id,
            "sessionId": message.session_id or message.payload.get("sessionId"),
            "auctionId": message.payload.get("auctionId"),
        }
        if self._party_attribute:
            values[self._party_attribute] = message.payload.get(self._party_attribute)
        # SNS refuses empty String attributes: an absent value is left out, not sent blank.
        return {
            name: {"DataType": "String", "StringValue": str(value)}
            for name, value in values.items()
            if value not in (None, "")
        }

    async def deliver(self, message: OutboxEnvelope) -> None:
        """Publish once; boto3 retries transient faults, the outbox retries the rest."""
        request: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": json.dumps(sns_body(message), separators=(",", ":")),
            "MessageAttributes": self.attributes(message),
        }
        if self._fifo:
            # A FIFO topic deduplicates a redelivery by itself (within its five-minute window).
            request["MessageDeduplicationId"] = message.id
            request["MessageGroupId"] = str(message.payload.get("auctionId") or message.id)
        try:
            await asyncio.to_thread(self._client.publish, **request)
        except (BotoCoreError, ClientError) as error:
            raise DeliveryFailed(f"SNS publish to {self.topic_arn}: {error}") from error
