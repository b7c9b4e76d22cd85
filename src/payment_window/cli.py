"""`payment-window`: the service's processes and operator commands.

Every command reads the `PW_` settings from the environment (see `payment-window --help`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from payment_window.config import Settings
from payment_window.logs import configure_logging

SETTINGS_HELP = "\n".join(
    f"PW_{name.upper()}: {field.description or ''} (default: {field.default!r})"
    for name, field in Settings.model_fields.items()
    if "secret" not in name and "key" not in name
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

    settings = _settings()
    typer.echo(f"payment-window serving on http://{host}:{port}  (docs: /docs)")
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


def main() -> None:
    app()
