"""Request and response bodies: camelCase on the wire, strict types, unknown fields refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from payment_window.domain import messages
from payment_window.domain.buyers import BuyerRecord
from payment_window.domain.connect import Charge, Connect
from payment_window.domain.money import MAX_AMOUNT
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.session import MAX_EXTENSION_MINUTES_PER_REQUEST, Status
from payment_window.service import OpenWindow

# Printable: PostgreSQL refuses NUL in text, and control characters have no business in an id.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
# Free text may span lines, but no other control characters (NUL above all).
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

Identifier = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)
]
Minutes = Annotated[int, Strict(), Field(ge=1, le=MAX_EXTENSION_MINUTES_PER_REQUEST)]
Reason = Annotated[str, Strict(), StringConstraints(max_length=500, pattern=TEXT_PATTERN)]


def _iso_text(value: object) -> object:
    """Only an ISO 8601 string is a time here: no Unix numbers, no digit strings."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2030-01-01T12:00:00Z")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date-time string, e.g. 2030-01-01T12:00:00Z"
        ) from None


def _in_utc(value: datetime) -> datetime:
    """The time in UTC; one that has no UTC form (year 0 or 10000 once shifted) is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between years 1 and 9999 in UTC") from None


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


class ConnectIn(_Body):
    """Stripe Connect: `destination` charges are made on the platform and transferred to
    `accountId` (with `applicationFeeAmount` kept, and on its behalf when `onBehalfOf`);
    `direct` charges are made on `accountId` itself (the `Stripe-Account` header)."""

    account_id: Annotated[
        str, Strict(), StringConstraints(max_length=255, pattern=r"^acct_[A-Za-z0-9]+$")
    ] = Field(description="the connected account, `acct_…`")
    charge: Literal["destination", "direct"]
    application_fee_amount: (
        Annotated[int, Strict(), Field(ge=0, le=MAX_AMOUNT, description="minor units")] | None
    ) = None
    on_behalf_of: Annotated[bool, Strict()] = False

    def to_connect(self) -> Connect:
        return Connect(
            self.account_id, Charge(self.charge), self.application_fee_amount, self.on_behalf_of
        )


class CheckoutIn(_Body):
    """Open a payment window for an auction's winner. Give `windowMinutes` or `expiresAt`
    (a time-zone-aware ISO 8601 time at most 7 days ahead), not both; neither means the
    configured default. Give `amount` and `currency` for a new Checkout Session, or
    `checkoutSessionId` to put the window on a session your own integration made (with
    `connect` when it lives on a connected account)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "auctionId": "auc_123",
                    "makerId": "mk_42",
                    "buyerId": "usr_7",
                    "amount": 12500,
                    "currency": "usd",
                    "windowMinutes": 1440,
                }
            ]
        }
    )

    auction_id: Identifier
    maker_id: Identifier
    buyer_id: Identifier
    amount: (
        Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT, description="minor units")] | None
    ) = None
    currency: (
        Annotated[
            str, Strict(), StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
        ]
        | None
    ) = Field(None, description="ISO 4217 code, e.g. usd")
    window_minutes: Minutes | None = None
    expires_at: IsoDateTime | None = None
    connect: ConnectIn | None = None
    checkout_session_id: (
        Annotated[str, Strict(), StringConstraints(max_length=255, pattern=r"^cs_[A-Za-z0-9_]+$")]
        | None
    ) = Field(None, description="a Checkout Session made elsewhere, to put the window on")

    @model_validator(mode="after")
    def _new_or_attached(self) -> CheckoutIn:
        if self.checkout_session_id is None and (self.amount is None or self.currency is None):
            raise ValueError(
                "give amount and currency, or checkoutSessionId to put the window on a "
                "Checkout Session made elsewhere"
            )
        if self.checkout_session_id is not None and (
            self.amount is not None or self.currency is not None
        ):
            raise ValueError(
                "an attached window takes its amount and currency from its Checkout Session: "
                "give checkoutSessionId without amount and currency"
            )
        return self

    def to_request(self) -> OpenWindow:
        return OpenWindow(
            auction_id=self.auction_id,
            maker_id=self.maker_id,
            buyer_id=self.buyer_id,
            amount=self.amount,
            currency=self.currency,
            window_minutes=self.window_minutes,
            # The wire speaks UTC; normalise here so every later step sees UTC too.
            expires_at=self.expires_at.astimezone(UTC) if self.expires_at else None,
            connect=self.connect.to_connect() if self.connect else None,
            checkout_session_id=self.checkout_session_id,
        )


class ExtendIn(_Body):
    """Move the deadline `minutes` later, within the maker's total-extension policy."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"action": "extend", "minutes": 60, "reason": "bank delay"}]
        }
    )

    action: Literal["extend"]
    minutes: Minutes
    reason: Reason | None = None


class TerminateIn(_Body):
    """Close the window now. `minutes` is refused here: it would mean nothing."""

    action: Literal["terminate"]
    reason: Reason | None = None


OverrideIn = Annotated[ExtendIn | TerminateIn, Field(discriminator="action")]


class PolicyBody(_Body):
    """A maker's extension policy."""

    max_extension_minutes: Annotated[
        int, Strict(), Field(ge=0, le=MAX_EXTENSION_MINUTES_PER_REQUEST)
    ]
    makers_may_override: Annotated[bool, Strict()]
    on_expiry: Literal["relist", "notify_maker", "offer_next_bidder"]

    def to_policy(self) -> ExtensionPolicy:
        return ExtensionPolicy(
            max_extension_minutes=self.max_extension_minutes,
            makers_may_override=self.makers_may_override,
            on_expiry=OnExpiry(self.on_expiry),
        )

    @classmethod
    def of(cls, policy: ExtensionPolicy) -> PolicyBody:
        return cls.model_validate(
            {
                "maxExtensionMinutes": policy.max_extension_minutes,
                "makersMayOverride": policy.makers_may_override,
                "onExpiry": policy.on_expiry.value,
            }
        )


# --- response bodies ---------------------------------------------------------------------

# On the wire exactly as `messages.iso` writes it, whichever path answers.
WireTime = Annotated[
    datetime,
    PlainSerializer(messages.iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Out(BaseModel):
    """A response body: camelCase on the wire, built from our values by attribute or alias."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class StatusOut(Out):
    """A payment window as its viewer sees it (times in ISO 8601 UTC with `Z`).

    The status route itself answers with `bodies.status_body` (its hot path skips pydantic);
    the schema test checks the two agree."""

    session_id: str
    auction_id: str
    status: Status
    expires_at: WireTime
    remaining_time: int = Field(ge=0, description="whole seconds left, never negative")
    server_time: WireTime
    version: int
    reason: str | None
    checkout_url: str | None
    amount: int
    currency: str
    maker_id: str


class UnpaidWindowOut(Out):
    """A window the buyer let close unpaid."""

    session_id: str
    auction_id: str
    closed_at: WireTime
    reason: str = Field(description="why it closed: a close reason, or `unknown`")


class BuyerRecordOut(Out):
    """A buyer's windows opened in the last `days` days (opened at or after `since`), by
    outcome: `opened = paid + unpaid + unsettled`."""

    buyer_id: str
    days: int = Field(description="the period's length in days")
    since: WireTime = Field(description="windows opened at or after this time are counted")
    opened: int = Field(ge=0)
    paid: int = Field(ge=0, description="paid, a payment that arrived after the close included")
    unpaid: int = Field(ge=0, description="closed unpaid, for any reason")
    unpaid_by_reason: dict[str, int] = Field(
        description="closed unpaid by close reason; every known reason is listed, 0 included"
    )
    unsettled: int = Field(
        ge=0, description="still open, or complete at Stripe with the payment being confirmed"
    )
    last_unpaid: UnpaidWindowOut | None = Field(
        description="the most recently closed of the unpaid windows counted; null when none"
    )
    server_time: WireTime

    @classmethod
    def of(cls, record: BuyerRecord) -> BuyerRecordOut:
        last = record.last_unpaid
        return cls(
            buyer_id=record.buyer_id,
            days=record.period.days,
            since=record.period.since,
            opened=record.opened,
            paid=record.paid,
            unpaid=record.unpaid,
            unpaid_by_reason=record.unpaid_by_reason,
            unsettled=record.unsettled,
            last_unpaid=None if last is None else UnpaidWindowOut.model_validate(last),
            server_time=record.period.until,
        )


class RepeatNonPayerOut(Out):
    """One of the buyers who let the most windows close unpaid in the summary's period."""

    buyer_id: str
    unpaid: int = Field(ge=1, description="windows opened in the period and closed unpaid")
    opened: int = Field(ge=1, description="windows opened in the period")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: Literal["ok"]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error shape under `statuses`."""
    return {status: {"model": ErrorOut} for status in statuses}
