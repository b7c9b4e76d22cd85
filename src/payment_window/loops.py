"""Which long-running loops each process runs: decided here, and nowhere else.

A process runs only what its permissions allow (`infrastructure/terraform/payments.tf` grants
each ECS task exactly what its loops need; `tests/integration/test_terraform.py` checks the two
agree). `serve` runs both loops in-process on the embedded default (SQLite, no Redis: one
process is the whole service) and none elsewhere unless `PW_SERVE_LOOPS` asks; `worker` runs
the expiry worker, plus the relay when `PW_WORKER_LOOPS` asks; `relay` runs the relay.
"""

from __future__ import annotations

from enum import StrEnum

from payment_window.config import Settings


class Loop(StrEnum):
    WORKER = "worker"  # the expiry worker: claims due windows, calls Stripe
    RELAY = "relay"  # the outbox relay: publishes to SNS and Segment


PROCESSES = ("serve", "worker", "relay")


def parse_loops(text: str) -> frozenset[Loop]:
    """`"worker,relay"` → both; `""` → none. Unknown names are an error, not ignored."""
    return frozenset(Loop(part.strip()) for part in text.split(",") if part.strip())


def loops_for(process: str, settings: Settings) -> frozenset[Loop]:
    """The loops `payment-window <process>` runs with `settings`."""
    if process == "serve":
        if settings.serve_loops is not None:
            return parse_loops(settings.serve_loops)
        embedded = settings.is_sqlite and not settings.redis_url
        return frozenset(Loop) if embedded else frozenset()
    if process == "worker":
        if settings.worker_loops is not None:
            return parse_loops(settings.worker_loops)
        return frozenset({Loop.WORKER})
    if process == "relay":
        return frozenset({Loop.RELAY})
    raise ValueError(f"unknown process {process!r}; one of {', '.join(PROCESSES)}")
