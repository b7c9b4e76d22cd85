"""Which loops each process runs."""

from __future__ import annotations

import pytest

from payment_window.config import Settings
from payment_window.loops import Loop, loops_for

SQLITE = "sqlite:///pw.db"
POSTGRES = "postgresql://pw@db/pw"


def test_serve_runs_both_loops_on_the_embedded_default_only() -> None:
    assert loops_for("serve", Settings(database_url=SQLITE, redis_url=None)) == set(Loop)
    assert loops_for("serve", Settings(database_url=POSTGRES, redis_url=None)) == set()
    assert loops_for("serve", Settings(database_url=SQLITE, redis_url="redis://r")) == set()


def test_serve_runs_what_pw_serve_loops_names() -> None:
    asked = Settings(database_url=POSTGRES, serve_loops="worker,relay")
    assert loops_for("serve", asked) == {Loop.WORKER, Loop.RELAY}
    none = Settings(database_url=SQLITE, serve_loops="")
    assert loops_for("serve", none) == set()


def test_worker_relays_only_when_asked_and_relay_only_relays() -> None:
    assert loops_for("worker", Settings(database_url=POSTGRES)) == {Loop.WORKER}
    both = Settings(database_url=POSTGRES, worker_loops="worker,relay")
    assert loops_for("worker", both) == {Loop.WORKER, Loop.RELAY}
    assert loops_for("relay", Settings(database_url=POSTGRES)) == {Loop.RELAY}


def test_an_unknown_loop_name_stops_start_up() -> None:
    with pytest.raises(ValueError, match="unknown loops"):
        Settings(database_url=POSTGRES, serve_loops="worker,relya")
