"""`payment-window migrate` says what it did: the revisions it applied, or that none was due."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payment_window.cli import app


def test_migrate_names_what_it_applied_then_that_nothing_was_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("PW_REDIS_URL", raising=False)
    runner = CliRunner()

    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0, first.output
    assert "applied 0001" in first.output and "up to date" not in first.output

    again = runner.invoke(app, ["migrate"])
    assert again.exit_code == 0, again.output
    assert "already up to date" in again.output and "applied 0" not in again.output
