"""The operations view for admins: every window, the summary, a session's audit trail."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BeforeValidator, Field

from payment_window.api.auth import CurrentActor
from payment_window.api.bodies import status_body
from payment_window.api.deps import SessionId
from payment_window.api.routes.page import PAGE_HEADERS, templates
from payment_window.api.schemas import (
    ID_PATTERN,
    BuyerRecordOut,
    Out,
    RepeatNonPayerOut,
    StatusOut,
    WireTime,
    aware_utc_time,
    error_responses,
)
from payment_window.domain.buyers import DEFAULT_DAYS, MAX_DAYS, MIN_DAYS
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.status import WindowStatus
from payment_window.domain.views import WindowFilter
from payment_window.operations import DEFAULT_PAGE, MAX_PAGE, Operations

router = APIRouter(tags=["operations"])

QueryTime = Annotated[datetime, BeforeValidator(aware_utc_time)]


async def get_operations(request: Request) -> Operations:
    operations: Operations = request.app.state.container.operations
    return operations


OperationsDep = Annotated[Operations, Depends(get_operations)]
BuyerId = Annotated[str, Path(alias="buyerId", min_length=1, max_length=128, pattern=ID_PATTERN)]
PeriodDays = Annotated[
    int,
    Query(
        ge=MIN_DAYS,
        le=MAX_DAYS,
        description="the period: windows opened (created) within the last this many days",
    ),
]


# --- response bodies: each model is both the answer and its published schema ----------------


class WindowItemOut(StatusOut):
    """A window as the status endpoint shows it, plus what operators need to chase it."""

    buyer_id: str
    attempts: int = Field(ge=0, description="failed attempts to expire it at Stripe")
    last_stripe_error: str | None
    stripe_account: str | None = Field(
        description="the maker's connected account (Stripe Connect); null: the platform's"
    )
    charge: str | None = Field(description="`destination` or `direct`; null without Connect")
    attached: bool = Field(description="the Checkout Session was made by another integration")

    @classmethod
    def of(cls, session: PaymentSession, now: datetime) -> WindowItemOut:
        return cls.model_validate(
            {
                **status_body(WindowStatus.of(session, now)),
                "buyerId": session.buyer_id,
                "attempts": session.expiry_attempts,
                "lastStripeError": session.last_expiry_error,
                "stripeAccount": session.connect_account_id,
                "charge": session.connect_charge,
                "attached": session.attached,
            }
        )


class WindowListOut(Out):
    items: list[WindowItemOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class SummaryOut(Out):
    open_count: int
    due_within_hour: int = Field(description="open, deadline within the next hour, not overdue")
    overdue_count: int = Field(description="open with the deadline already passed")
    oldest_overdue_seconds: int | None = Field(description="null when nothing is overdue")
    failing_at_stripe: int = Field(description="open windows whose expiry at Stripe failed")
    awaiting_confirmation_over_day: int = Field(
        description="windows awaiting payment confirmation for more than a day"
    )
    duplicate_payments: int = Field(
        description="second payments for one window in the last 30 days (refund decisions)"
    )
    undelivered_outbox: int
    expired_last_24h_by_reason: dict[str, int] = Field(
        alias="expiredLast24hByReason", description="closed unpaid in the last 24 hours"
    )
    buyer_period_days: int = Field(description="the period `repeatNonPayers` covers, in days")
    repeat_non_payers: list[RepeatNonPayerOut] = Field(
        description="up to 10 buyers with the most windows opened in the period and closed "
        "unpaid, most first (ties by buyer id); buyers with none are not listed"
    )
    server_time: WireTime
    stripe_budget_rps: float = Field(
        description="Stripe calls per second the deployment may make now: PW_STRIPE_RPS, "
        "halved by each 429 from Stripe and growing back"
    )
    stripe_budget_max_rps: float = Field(description="PW_STRIPE_RPS")


class AuditEntryOut(Out):
    id: int
    action: str
    actor: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any]
    at: WireTime


class WebhookEndpointOut(Out):
    """An outgoing webhook endpoint: its delivery state and what waits for it."""

    url: str
    destination: str = Field(description="its outbox destination (`webhook:` and a URL hash)")
    active: bool = Field(description="false once it answered 410 Gone, until re-enabled")
    disabled_reason: str | None
    last_success_at: WireTime | None
    last_failure_at: WireTime | None
    last_error: str | None
    consecutive_failures: int = Field(ge=0, description="failed attempts since the last success")
    failures: int = Field(ge=0, description="failed attempts in all")
    backlog: int = Field(ge=0, description="undelivered messages, parked ones included")
    parked: int = Field(
        ge=0, description="messages that failed for 3 days (`payment-window relay --redeliver`)"
    )


NO_STORE = "no-store"


# --- routes -------------------------------------------------------------------------------


@router.get(
    "/payments/windows",
    response_model=WindowListOut,
    responses=error_responses(400, 401, 403, 422),
)
async def list_windows(
    response: Response,
    actor: CurrentActor,
    operations: OperationsDep,
    status: Annotated[Status | None, Query()] = None,
    maker_id: Annotated[
        str | None, Query(alias="makerId", min_length=1, max_length=128, pattern=ID_PATTERN)
    ] = None,
    buyer_id: Annotated[
        str | None, Query(alias="buyerId", min_length=1, max_length=128, pattern=ID_PATTERN)
    ] = None,
    auction_id: Annotated[
        str | None, Query(alias="auctionId", min_length=1, max_length=128, pattern=ID_PATTERN)
    ] = None,
    due_before: Annotated[
        QueryTime | None, Query(alias="dueBefore", description="deadline before this time")
    ] = None,
    due_after: Annotated[
        QueryTime | None, Query(alias="dueAfter", description="deadline at or after this time")
    ] = None,
    overdue: Annotated[
        bool, Query(description="only open windows whose deadline has passed")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+$")
    ] = None,
) -> WindowListOut:
    """Every window matching the filters, by deadline then id, a page at a time (admin only).

    Keyset pagination: a window whose deadline does not move while you page is seen exactly
    once. One extended after it was handed out may be handed out again at its new deadline,
    with a higher `version`; keep the higher one.
    """
    query = WindowFilter(
        status=status,
        maker_id=maker_id,
        buyer_id=buyer_id,
        auction_id=auction_id,
        due_before=due_before,
        due_after=due_after,
        overdue=overdue,
    )
    page = await operations.windows(query, actor, limit=limit, cursor=cursor)
    response.headers["Cache-Control"] = NO_STORE
    return WindowListOut(
        items=[WindowItemOut.of(session, page.now) for session in page.sessions],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/payments/windows/summary",
    response_model=SummaryOut,
    responses=error_responses(401, 403, 422),
)
async def windows_summary(
    request: Request,
    response: Response,
    actor: CurrentActor,
    operations: OperationsDep,
    days: PeriodDays = DEFAULT_DAYS,
) -> SummaryOut:
    """Open, due-soon, overdue and failing windows, the outbox backlog, recent closings, and
    the repeat non-payers: the buyers with the most windows opened (created) in the last `days`
    days and closed unpaid (admin only)."""
    response.headers["Cache-Control"] = NO_STORE
    summary = await operations.summary(actor, days=days)
    container = request.app.state.container
    return SummaryOut.model_validate(
        {
            **{field.name: getattr(summary, field.name) for field in fields(summary)},
            "stripe_budget_rps": round(await container.stripe_budget.pace(), 2),
            "stripe_budget_max_rps": container.settings.stripe_rps,
        }
    )


@router.get(
    "/payments/buyers/{buyerId}/record",
    response_model=BuyerRecordOut,
    responses=error_responses(401, 403, 422),
)
async def buyer_record(
    response: Response,
    buyer_id: BuyerId,
    actor: CurrentActor,
    operations: OperationsDep,
    days: PeriodDays = DEFAULT_DAYS,
) -> BuyerRecordOut:
    """A buyer's payment record (admin only): the windows opened (created) in the last `days`
    days (90 unless asked), how many were paid, closed unpaid (by close reason) or are still
    running, and the last one closed unpaid. A window counts in the period by when it was
    opened, however long it ran. A buyer with no windows has a record of zeros."""
    record = await operations.buyer_record(buyer_id, actor, days=days)
    response.headers["Cache-Control"] = NO_STORE
    return BuyerRecordOut.of(record)


@router.get(
    "/payments/checkout/{sessionId}/audit",
    response_model=list[AuditEntryOut],
    responses=error_responses(401, 403, 404),
)
async def session_audit(
    response: Response, session_id: SessionId, actor: CurrentActor, operations: OperationsDep
) -> list[AuditEntryOut]:
    """The session's audit trail, oldest first: admins and the session's maker. Buyers and
    services get 403; another maker gets 404."""
    trail = await operations.audit_trail(session_id, actor)
    response.headers["Cache-Control"] = NO_STORE
    return [AuditEntryOut.model_validate(record) for record in trail]


@router.get(
    "/payments/webhooks/endpoints",
    response_model=list[WebhookEndpointOut],
    responses=error_responses(401, 403),
)
async def webhook_endpoints(
    response: Response, actor: CurrentActor, operations: OperationsDep
) -> list[WebhookEndpointOut]:
    """Each configured outgoing webhook endpoint (`PW_WEBHOOK_ENDPOINTS`): last success,
    failures, backlog and parked messages, and whether a 410 disabled it (admin only)."""
    found = await operations.webhook_endpoints(actor)
    response.headers["Cache-Control"] = NO_STORE
    return [
        WebhookEndpointOut.model_validate(
            {**asdict(endpoint), "active": endpoint.disabled_at is None}
        )
        for endpoint in found
    ]


@router.get("/ops", response_class=HTMLResponse, include_in_schema=False)
async def operations_page(request: Request) -> HTMLResponse:
    """The operations page; its admin token arrives in the URL fragment, as on the checkout page."""
    return templates.TemplateResponse(request, "ops.html", {}, headers=PAGE_HEADERS)
