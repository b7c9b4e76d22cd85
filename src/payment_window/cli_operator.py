"""The operator's commands: demo, policy, windows, audit, buyers (tables in `cli_tables`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from payment_window.cli_common import load_settings
from payment_window.domain.buyers import DEFAULT_DAYS, MAX_DAYS, MIN_DAYS
from payment_window.domain.policy import OnExpiry
from payment_window.domain.session import MAX_EXTENSION_MINUTES_PER_REQUEST


def demo(
    url: Annotated[str, typer.Option(help="the running service")] = "http://127.0.0.1:8000",
    minutes: Annotated[int, typer.Option(help="length of the sample window")] = 5,
) -> None:
    """Open a sample window on a running service and print its checkout page and tokens."""
    import httpx

    from payment_window.api.auth import mint_token
    from payment_window.domain.access import Role
    from payment_window.service import new_session_id

    settings = load_settings()
    steps = 4

    def step(number: int, text: str) -> None:
        typer.echo(f"[{number}/{steps}] {text}")

    step(1, f"checking the service at {url}")
    try:
        httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        typer.echo(f"the service is not answering ({error}); start it with `make run`", err=True)
        raise typer.Exit(1) from error
    step(2, "minting tokens for the marketplace, a buyer, the maker and an admin")
    buyer, maker = "buyer-demo", "maker-demo"
    service_token = mint_token(settings, "marketplace", Role.SERVICE)
    tokens = {
        "buyer": mint_token(settings, buyer, Role.BUYER),
        "maker": mint_token(settings, maker, Role.MAKER, maker_id=maker),
        "admin": mint_token(settings, "ops-demo", Role.ADMIN),
    }
    step(3, f"opening a {minutes}-minute payment window")
    response = httpx.post(
        f"{url}/payments/checkout",
        headers={"Authorization": f"Bearer {service_token}"},
        json={
            "auctionId": f"auction-{new_session_id()[3:11]}",
            "makerId": maker,
            "buyerId": buyer,
            "amount": 12500,
            "currency": "eur",
            "windowMinutes": minutes,
        },
        timeout=30,
    )
    if response.status_code != 201:
        typer.echo(f"the service refused: {response.status_code} {response.text}", err=True)
        raise typer.Exit(1)
    body = response.json()
    session_id = body["sessionId"]
    step(4, f"window {session_id} is open until {body['expiresAt']}")
    for viewer, token in tokens.items():
        typer.echo(f"\n{viewer} view:\n  {url}/checkout/{session_id}#token={token}")
    typer.echo(f"\noperations page (admin):\n  {url}/ops#token={tokens['admin']}")
    typer.echo(f"\nAPI documentation:\n  {url}/docs")
    typer.echo(f"\nadmin token (for curl):\n  {tokens['admin']}")


def policy(
    maker_id: Annotated[str, typer.Argument(help="the maker whose policy to show or change")],
    on_expiry: Annotated[
        OnExpiry | None,
        typer.Option(help="what an unpaid window asks of the auction service"),
    ] = None,
    max_extension_minutes: Annotated[
        int | None,
        typer.Option(
            min=0, max=MAX_EXTENSION_MINUTES_PER_REQUEST, help="total extension over a window"
        ),
    ] = None,
    makers_may_override: Annotated[
        bool | None,
        typer.Option(
            "--makers-may-override/--makers-may-not-override",
            help="may the maker extend or terminate their own windows",
        ),
    ] = None,
) -> None:
    """Show a maker's extension policy, or change the parts given (as an admin's PUT would)."""
    import re

    from payment_window.api.schemas import ID_PATTERN
    from payment_window.cli_tables import maker_policy, policy_lines

    if len(maker_id) > 128 or not re.fullmatch(ID_PATTERN, maker_id):
        raise typer.BadParameter("a maker id is 1 to 128 characters, none a control character")
    wanted = {
        "on_expiry": on_expiry,
        "max_extension_minutes": max_extension_minutes,
        "makers_may_override": makers_may_override,
    }
    changes = {name: value for name, value in wanted.items() if value is not None}
    shown, own = asyncio.run(maker_policy(load_settings(), maker_id, changes))
    for line in policy_lines(maker_id, shown, own):
        typer.echo(line)


def windows(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="only open windows whose deadline has passed")
    ] = False,
    due_within: Annotated[
        str | None,
        typer.Option(
            "--due-within", help="only open windows due within this time, e.g. 30m, 1h, 2h30m"
        ),
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="open, awaiting_payment_confirmation, paid or expired")
    ] = None,
    maker: Annotated[str | None, typer.Option(help="only this maker's windows")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 50,
) -> None:
    """List payment windows by deadline, straight from the store."""
    from datetime import UTC, datetime

    from payment_window.cli_tables import read_windows, windows_table
    from payment_window.domain.session import Status
    from payment_window.domain.views import WindowFilter
    from payment_window.operations import parse_duration

    if overdue and due_within:
        raise typer.BadParameter("use --overdue or --due-within, not both")
    try:
        wanted = Status(status) if status else None
        within = parse_duration(due_within) if due_within else None
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    now = datetime.now(UTC)
    query = WindowFilter(
        status=Status.OPEN if within and wanted is None else wanted,
        maker_id=maker,
        due_after=now if within else None,
        due_before=now + within if within else None,
        overdue=overdue,
    )
    listing = asyncio.run(read_windows(load_settings(), query, limit))
    if not listing.sessions:
        typer.echo("no payment windows match")
        return
    for line in windows_table(listing):
        typer.echo(line)
    more = f"; more with --limit {limit * 2}" if listing.more else ""
    typer.echo(f"\n{len(listing.sessions)} window(s){more}")


def audit(session_id: Annotated[str, typer.Argument(help="the payment session id")]) -> None:
    """Print a payment session's audit trail, oldest first."""
    from payment_window.cli_tables import audit_table, read_audit
    from payment_window.domain.errors import SessionNotFound

    try:
        trail = asyncio.run(read_audit(load_settings(), session_id))
    except SessionNotFound as missing:
        typer.echo(str(missing), err=True)
        raise typer.Exit(1) from None
    for line in audit_table(trail):
        typer.echo(line)


def buyers(
    buyer_id: Annotated[
        str | None, typer.Argument(metavar="BUYER_ID", help="print this buyer's payment record")
    ] = None,
    repeat: Annotated[
        bool,
        typer.Option("--repeat", help="the buyers who let the most windows close unpaid (top 10)"),
    ] = False,
    days: Annotated[
        int,
        typer.Option(
            min=MIN_DAYS,
            max=MAX_DAYS,
            help="the period: windows opened (created) within the last this many days",
        ),
    ] = DEFAULT_DAYS,
) -> None:
    """Buyers' payment records: one buyer's, or the repeat non-payers (--repeat)."""
    from payment_window.cli_tables import (
        buyer_record_lines,
        non_payers_table,
        read_buyer_record,
        read_repeat_non_payers,
    )

    if (buyer_id is None) == (not repeat):
        raise typer.BadParameter("give a BUYER_ID or --repeat (one of them)")
    if buyer_id is not None:
        record = asyncio.run(read_buyer_record(load_settings(), buyer_id, days))
        for line in buyer_record_lines(record):
            typer.echo(line)
        return
    non_payers = asyncio.run(read_repeat_non_payers(load_settings(), days))
    if not non_payers:
        typer.echo(f"no buyer let a window opened in the last {days} days close unpaid")
        return
    for line in non_payers_table(non_payers):
        typer.echo(line)
    typer.echo(f"\nwindows opened in the last {days} days; top {len(non_payers)} by unpaid")
