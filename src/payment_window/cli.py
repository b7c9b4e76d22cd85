"""`payment-window`: the service's processes and operator commands.

Every command reads the `PW_` settings from the environment (see `payment-window --help`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from pydantic.fields import FieldInfo

from payment_window.config import Settings
from payment_window.logs import configure_logging


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return (
        ",".join(map(str, value))
        if isinstance(value, list)
        else str(getattr(value, "value", value))
    )


SETTINGS_HELP = "\n".join(
    f"PW_{name.upper()}: {field.description} (default: {_default(field)})"
    for name, field in Settings.model_fields.items()
)

app = typer.Typer(
    help="Enforces payment windows on Stripe Checkout sessions.\n\nSettings (environment):\n\n"
    + SETTINGS_HELP.replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings)
    return settings


@app.command()
def migrate() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    from payment_window.adapters.store import migrate as run_migrations

    settings = _settings()
    run_migrations(settings)
    typer.echo("store is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve the HTTP API (plus the worker and relay in-process on the embedded default)."""
    import uvicorn

    from payment_window.api.app import create_app
    from payment_window.runner import with_embedded_stripe

    settings = with_embedded_stripe(_settings(), f"http://{host}:{port}")
    typer.echo(f"payment-window serving on http://{host}:{port}  (API docs: /docs)")
    typer.echo("open a sample window with: payment-window demo")
    uvicorn.run(create_app(settings, background=True), host=host, port=port, log_level="warning")


@app.command()
def worker() -> None:
    """Close windows as they fall due, until SIGTERM (the long-running expiry task)."""
    from payment_window.runner import run_worker

    asyncio.run(run_worker(_settings()))


@app.command("expire-due")
def expire_due() -> None:
    """Run one expiry pass (what the EventBridge schedule invokes) and print what it did."""
    from payment_window.runner import expire_due_once

    report = asyncio.run(expire_due_once(_settings()))
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
        bool, typer.Option("--status", help="list the backlog and failing messages, then exit")
    ] = False,
) -> None:
    """Deliver outbox messages (SNS, Segment) until SIGTERM; or show the backlog."""
    from payment_window.runner import outbox_backlog, run_relay

    settings = _settings()
    if not show_status:
        asyncio.run(run_relay(settings))
        return
    backlog = asyncio.run(outbox_backlog(settings))
    typer.echo(f"undelivered: {backlog.undelivered}")
    for destination, count in sorted(backlog.by_destination.items()):
        typer.echo(f"  {destination:<12} {count}")
    if backlog.failing:
        typer.echo("failing:")
    for message in backlog.failing:
        typer.echo(
            f"  {message.id}  {message.destination:<10} {message.event_type:<32} "
            f"attempts={message.attempts}  {message.last_error}"
        )


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
    typer.echo(f"\nadmin token (for curl):\n  {tokens['admin']}")


def main() -> None:
    app()
