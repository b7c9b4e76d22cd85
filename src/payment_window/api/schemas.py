"""Request and response bodies: camelCase on the wire, strict types, unknown fields refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
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
from payment_window.domain.times import read_aware_utc
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


TIME_HINT = "an ISO 8601 date-time with a zone, e.g. 2030-01-01T12:00:00Z"


def aware_utc_time(value: object) -> datetime:
    """The one reading of a time a client sends (body or query): an ISO 8601 string with a
    zone, no Unix numbers or digit strings, in UTC; a time with no UTC form (year 0 or 10000
    once shifted) is refused."""
    parsed = read_aware_utc(value)
    if parsed is None:
        raise ValueError(f"must be {TIME_HINT}, between years 1 and 9999 in UTC")
    return parsed


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(aware_utc_time)]


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
    on_expiry: OnExpiry

    def to_policy(self) -> ExtensionPolicy:
        return ExtensionPolicy(
            max_extension_minutes=self.max_extension_minutes,
            makers_may_override=self.makers_may_override,
            on_expiry=self.on_expiry,
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
    """A payment window as its viewer sees it (times in ISO 8601 UTC with `Z`): the one status
    body (built by `bodies.status_out`) of every answer, live event and operations list."""

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


class FieldProblem(BaseModel):
    """One refused part of a request (`invalid_request`)."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the body field, query parameter or `<name> header`")
    message: str


class ErrorDetail(BaseModel):
    """`code` is stable, `message` is for people; a few codes add the keys below."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="e.g. `invalid_request`, `window_elapsed`, `not_found`")
    message: str
    fields: list[FieldProblem] | None = Field(
        None, description="`invalid_request`: each refused part of the request"
    )
    minutes_still_allowed: int | None = Field(
        None,
        alias="minutesStillAllowed",
        description="`extension_exceeds_policy`: what the maker's policy still allows",
    )
    minimum_amount: int | None = Field(
        None, alias="minimumAmount", description="`amount_too_small`: Stripe's minimum charge"
    )
    session_id: str | None = Field(
        None,
        alias="sessionId",
        description="`window_already_open`, `auction_already_paid`: the auction's window",
    )
    checks: dict[str, Literal["ok", "unreachable"]] | None = Field(
        None, description="`not_ready`: each dependency's state"
    )


class ErrorOut(BaseModel):
    """Every error answer: `{"error": {"code": ..., "message": ...}}`, nothing else."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


RETRY_AFTER_TEXT = "seconds to wait before trying again"
RETRY_AFTER: dict[str, Any] = {
    "description": RETRY_AFTER_TEXT,
    "schema": {"type": "integer", "minimum": 0},
}
BEARER_CHALLENGE: dict[str, Any] = {
    "description": 'the bearer challenge, e.g. `Bearer realm="payment-window", '
    'error="invalid_token"`',
    "schema": {"type": "string"},
}
ETAG: dict[str, Any] = {
    "description": 'the window\'s version, quoted (`"3"`): send it back as `If-Match`',
    "schema": {"type": "string"},
}


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="the running release (pyproject.toml's version)")


def error_responses(*statuses: int, retry_409: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error shape under `statuses`; 429 and 503 always carry
    `Retry-After`, a 409 does when `retry_409` (an `Idempotency-Key` still in use), a 401 its
    `WWW-Authenticate` challenge."""
    entries: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorOut}
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
        elif status == 401:
            entry["headers"] = {"WWW-Authenticate": {**BEARER_CHALLENGE, "required": True}}
        elif status == 409 and retry_409:
            entry["headers"] = {
                "Retry-After": {
                    **RETRY_AFTER,
                    "description": f"with `idempotency_key_in_use`: {RETRY_AFTER_TEXT}",
                }
            }
        entries[status] = entry
    return entries


def status_answer_doc(description: str = "The window's status.") -> dict[str, Any]:
    """The OpenAPI entry of an answer carrying the status body (and its `ETag`)."""
    return {
        "model": StatusOut,
        "description": description,
        "headers": {"ETag": {**ETAG, "required": True}},
    }
