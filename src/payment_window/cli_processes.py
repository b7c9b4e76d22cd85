"""The service's processes as commands: migrate, serve, worker, expire-due, reconcile, relay,
prune. Each reads its settings, checks what it must be given (`runner.require_for`), and runs."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from payment_window.cli_common import load_settings, refuse


def migrate() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    from payment_window.adapters.migrate import migrate as run_migrations

    settings = load_settings()
    applied = run_migrations(settings)
    if applied:
        typer.echo(f"store migrated: applied {', '.join(applied)}")
    else:
        typer.echo("store was already up to date: no migration to apply")


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

    settings = load_settings()
    try:
        if local_stripe:
            settings = with_local_stripe(settings, f"http://{host}:{port}")
        require_for("serve", settings)
    except StartupRefused as refused:
        refuse(refused)
    typer.echo(f"payment-window serving on http://{host}:{port}  (API docs: /docs)")
    typer.echo("open a sample window with: payment-window demo")
    # Which loops run beside the API is decided in one place (`loops.loops_for`).
    # On SIGTERM live streams end first (a last `reconnect` event), then it exits 0.
    serving.serve(create_app(settings, background=True), host, port)


def worker_process() -> None:
    """Close windows as they fall due, until SIGTERM (and relay, if PW_WORKER_LOOPS asks).

    Needs PW_STRIPE_API_KEY. On the embedded default (SQLite without Redis) `serve` already
    runs the worker in-process (so does `serve` wherever PW_SERVE_LOOPS names it); a worker
    beside it is not needed there.
    """
    from payment_window.runner import StartupRefused, require_for, run_worker_process

    settings = load_settings()
    try:
        require_for("worker", settings)
    except StartupRefused as refused:
        refuse(refused)
    asyncio.run(run_worker_process(settings))


def expire_due() -> None:
    """Run one expiry pass (what the EventBridge schedule invokes) and print what it did.

    Needs PW_STRIPE_API_KEY: a window is only closed once Stripe can no longer take the payment.
    """
    from payment_window.runner import StartupRefused, expire_due_once, require_for

    settings = load_settings()
    try:
        require_for("expire-due", settings)
    except StartupRefused as refused:
        refuse(refused)
    report = asyncio.run(expire_due_once(settings))
    typer.echo(json.dumps(report.as_dict()))


def reconcile() -> None:
    """Rebuild the window index from the store and report what it fixed."""
    from payment_window.runner import reconcile_index

    report = asyncio.run(reconcile_index(load_settings(), progress=True))
    typer.echo(json.dumps(report))


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

    settings = load_settings()
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
            refuse(refused)
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


def prune() -> None:
    """One retention pass, then exit (the relay runs one every hour): delivered or cancelled
    outbox rows older than PW_OUTBOX_RETENTION_HOURS, Stripe event ids older than
    PW_WEBHOOK_EVENT_RETENTION_DAYS, Idempotency-Keys past their 24 hours. Prints the counts."""
    from payment_window.runner import prune_store

    typer.echo(json.dumps(asyncio.run(prune_store(load_settings()))))
