"""What every `payment-window` command shares: settings from the environment, and refusing."""

from __future__ import annotations

from typing import NoReturn

import typer

from payment_window.config import Settings
from payment_window.logs import configure_logging


def load_settings() -> Settings:
    """The `PW_` settings from the environment, with logging configured by them."""
    settings = Settings()
    configure_logging(settings)
    return settings


def refuse(error: Exception) -> NoReturn:
    """Stop a command that must not start as configured: the reason on stderr, exit code 2."""
    typer.echo(f"payment-window: {error}", err=True)
    raise typer.Exit(2)
