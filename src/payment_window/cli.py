"""`payment-window`: the service's processes and operator commands.

Every command reads the `PW_` settings from the environment (see `payment-window --help`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from payment_window import __version__, cli_operator, cli_processes
from payment_window.config import Settings, shown_default

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


# The commands, in the order `--help` lists them; the names are the CLI's contract.
for name, command in (
    ("migrate", cli_processes.migrate),
    ("serve", cli_processes.serve),
    ("worker", cli_processes.worker_process),
    ("expire-due", cli_processes.expire_due),
    ("reconcile", cli_processes.reconcile),
    ("relay", cli_processes.relay),
    ("prune", cli_processes.prune),
    ("demo", cli_operator.demo),
    ("policy", cli_operator.policy),
    ("windows", cli_operator.windows),
    ("audit", cli_operator.audit),
    ("buyers", cli_operator.buyers),
):
    app.command(name)(command)


def main() -> None:
    app()
