"""`payment-window`: the service's processes and operator commands.

Every command reads the `PW_` settings from the environment (see `payment-window --help`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, NoReturn

import typer

from payment_window import __version__
from payment_window.config import Settings, shown_default
from payment_window.domain.buyers import DEFAULT_DAYS, MAX_DAYS, MIN_DAYS
from payment_window.domain.policy import OnExpiry
from payment_window.domain.session import MAX_EXTENSION_MINUTES_PER_REQUEST
from payment_window.logs import configure_logging

SETTINGS_HELP = "\n".join(
    f"PW_{name.upper()}: {field.description} (default: {shown_default(field)})"
    for name, field in Settings.model_fields.items()
)

app = typer.Typer(
    help="Enforces payment windows on Stripe Checkout sessions.\n\nSettings (environment):\n\n"
    + SETTINGS_HELP.replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"payment-window {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    # No docstring: the app's help (with every setting) stays the top-level help.
    pass


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings)
    return settings


@app.command()
def migrate() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    from payment_window.adapters.migrate import migrate as run_migrations

    settings = _settings()
    applied = run_migrations(settings)
    if applied:
        typer.echo(f"store migrated: applied {', '.join(applied)}")
    else:
        typer.echo("store was already up to date: no migration to apply")


def _refuse(error: Exception) -> NoReturn:
    typer.echo(f"payment-window: {error}", err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    local_stripe: Annotated[
        bool,
        typer.Option(
            "--local-stripe",
            help="development: start the local Stripe stand-in (the devstripe package) on a "
            "free port and use it instead of Stripe; no money moves",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (plus the worker and relay in-process on the embedded default, or
    the loops PW_SERVE_LOOPS names).

    Without PW_STRIPE_API_KEY it refuses to start unless --local-stripe asks for the stand-in.
    """
    from payment_window.api import serving
    from payment_window.api.app import create_app
    from payment_window.runner import StartupRefused, require_for, with_local_stripe

    settings = _settings()
    try:
        if local_stripe:
            settings = with_local_stripe(settings, f"http://{host}:{port}")
        require_for("serve", settings)
    except StartupRefused as refused:
        _refuse(refused)
    typer.echo(f"payment-window serving on http://{host}:{port}  (API docs: /docs)")
    typer.echo("open a sample window with: payment-window demo")
    # Which loops run beside the API is decided in one place (`loops.loops_for`).
    # On SIGTERM live streams end first (a last `reconnect` event), then it exits 0.
    serving.serve(create_app(settings, background=True), host, port)


@app.command()
def worker() -> None:
    """Close windows as they fall due, until SIGTERM (and relay, if PW_WORKER_LOOPS asks).

    Needs PW_STRIPE_API_KEY. On the embedded default (SQLite without Redis) `serve` already
    runs the worker in-process (so does `serve` wherever PW_SERVE_LOOPS names it); a worker
    beside it is not needed there.
    """
    from payment_window.runner import StartupRefused, require_for, run_worker

    settings = _settings()
    try:
        require_for("worker", settings)
    except StartupRefused as refused:
        _refuse(refused)
    asyncio.run(run_worker(settings))


@app.command("expire-due")
def expire_due() -> None:
    """Run one expiry pass (what the EventBridge schedule invokes) and print what it did.

    Needs PW_STRIPE_API_KEY: a window is only closed once Stripe can no longer take the payment.
    """
    from payment_window.runner import StartupRefused, expire_due_once, require_for

    settings = _settings()
    try:
        require_for("expire-due", settings)
    except StartupRefused as refused:
        _refuse(refused)
    report = asyncio.run(expire_due_once(settings))
    typer.echo(json.dumps(report.as_dict()))


@app.command()
def reconcile() -> None:
    """Rebuild the window index from the store and report what it fixed."""
    from payment_window.runner import reconcile_index

    report = asyncio.run(reconcile_index(_settings(), progress=True))
    typer.echo(json.dumps(report))


@app.command()
def relay(
    show_status: Annotated[
        bool,
        typer.Option(
            "--status", help="list the backlog, failing messages and webhook endpoints, then exit"
        ),
    ] = False,
    redeliver: Annotated[
        str | None,
        typer.Option(
            "--redeliver",
            metavar="MESSAGE_ID",
            help="make an undelivered (parked) outbox message due now, then exit",
        ),
    ] = None,
    enable_endpoint: Annotated[
        str | None,
        typer.Option(
            "--enable-endpoint",
            metavar="URL",
            help="deliver again to a webhook endpoint a 410 disabled, then exit",
        ),
    ] = None,
) -> None:
    """Deliver outbox messages (SNS, Segment, webhooks) until SIGTERM; or show the backlog."""
    from payment_window.runner import (
        StartupRefused,
        outbox_backlog,
        require_for,
        run_relay,
    )
    from payment_window.runner import (
        enable_endpoint as enable,
    )
    from payment_window.runner import (
        redeliver as redeliver_message,
    )

    settings = _settings()
    if redeliver is not None:
        if not asyncio.run(redeliver_message(settings, redeliver)):
            typer.echo(f"no undelivered outbox message {redeliver}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{redeliver} is due now; a running relay delivers it")
        return
    if enable_endpoint is not None:
        if not asyncio.run(enable(settings, enable_endpoint)):
            typer.echo(f"{enable_endpoint} is not a disabled webhook endpoint", err=True)
            raise typer.Exit(1)
        typer.echo(f"{enable_endpoint} enabled; its waiting messages go out as they fall due")
        return
    if not show_status:
        try:
            require_for("relay", settings)
        except StartupRefused as refused:
            _refuse(refused)
        asyncio.run(run_relay(settings))
        return
    backlog = asyncio.run(outbox_backlog(settings))
    typer.echo(f"undelivered: {backlog.undelivered}")
    for destination, count in sorted(backlog.by_destination.items()):
        typer.echo(f"  {destination:<20} {count}")
    if backlog.endpoints:
        typer.echo("webhook endpoints:")
    for endpoint in backlog.endpoints:
        state = f"disabled ({endpoint.disabled_reason})" if endpoint.disabled_at else "active"
        success = endpoint.last_success_at.isoformat() if endpoint.last_success_at else "never"
        typer.echo(
            f"  {endpoint.url}  [{endpoint.destination}] {state}  last success: {success}  "
            f"failures: {endpoint.failures} ({endpoint.consecutive_failures} in a row)  "
            f"backlog: {endpoint.backlog}  parked: {endpoint.parked}"
        )
        if endpoint.last_error:
            typer.echo(f"    last error: {endpoint.last_error}")
    if backlog.failing:
        typer.echo("failing:")
    for message in backlog.failing:
        parked = "  PARKED" if message.parked_at else ""
        typer.echo(
            f"  {message.id}  {message.destination:<10} {message.event_type:<32} "
            f"attempts={message.attempts}{parked}  {message.last_error}"
        )


@app.command()
def prune() -> None:
    """One retention pass, then exit (the relay runs one every hour): delivered or cancelled
    outbox rows older than PW_OUTBOX_RETENTION_HOURS, Stripe event ids older than
    PW_WEBHOOK_EVENT_RETENTION_DAYS, Idempotency-Keys past their 24 hours. Prints the counts."""
    from payment_window.runner import prune_store

    typer.echo(json.dumps(asyncio.run(prune_store(_settings()))))


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="the running service")] = "http://127.0.0.1:8000",
    minutes: Annotated[int, typer.Option(help="length of the sample window")] = 5,
) -> None:
    """Open a sample window on a running service and print its checkout page and tokens."""
    import httpx

    from payment_window.api.auth import mint_token
    from payment_window.domain.access import Role
    from payment_window.service import new_session_id

    settings = _settings()
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


@app.command()
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
    shown, own = asyncio.run(maker_policy(_settings(), maker_id, changes))
    for line in policy_lines(maker_id, shown, own):
        typer.echo(line)


@app.command()
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
    listing = asyncio.run(read_windows(_settings(), query, limit))
    if not listing.sessions:
        typer.echo("no payment windows match")
        return
    for line in windows_table(listing):
        typer.echo(line)
    more = f"; more with --limit {limit * 2}" if listing.more else ""
    typer.echo(f"\n{len(listing.sessions)} window(s){more}")


@app.command()
def audit(session_id: Annotated[str, typer.Argument(help="the payment session id")]) -> None:
    """Print a payment session's audit trail, oldest first."""
    from payment_window.cli_tables import audit_table, read_audit
    from payment_window.domain.errors import SessionNotFound

    try:
        trail = asyncio.run(read_audit(_settings(), session_id))
    except SessionNotFound as missing:
        typer.echo(str(missing), err=True)
        raise typer.Exit(1) from None
    for line in audit_table(trail):
        typer.echo(line)


@app.command()
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
        record = asyncio.run(read_buyer_record(_settings(), buyer_id, days))
        for line in buyer_record_lines(record):
            typer.echo(line)
        return
    non_payers = asyncio.run(read_repeat_non_payers(_settings(), days))
    if not non_payers:
        typer.echo(f"no buyer let a window opened in the last {days} days close unpaid")
        return
    for line in non_payers_table(non_payers):
        typer.echo(line)
    typer.echo(f"\nwindows opened in the last {days} days; top {len(non_payers)} by unpaid")


def main() -> None:
    app()
