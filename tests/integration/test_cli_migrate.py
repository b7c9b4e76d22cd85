"""`payment-window migrate` says what it did: the revisions it applied, or that none was due."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A process of its own, as an operator runs it: the command configures logging for its
    # own standard streams.
    return subprocess.run(
        [sys.executable, "-m", "payment_window", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_names_what_it_applied_then_that_nothing_was_due(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env["PW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'store.db'}"

    first = _migrate(env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001" in first.stdout and "up to date" not in first.stdout

    again = _migrate(env)
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout and "applied 0" not in again.stdout
