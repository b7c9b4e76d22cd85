"""Fail when the unit layer alone covers a money-path module less than the floor.

    .venv/bin/python scripts/coverage_gate.py .coverage-unit.json

Reads the JSON report `pytest tests/unit --cov=payment_window --cov-report=json:...` writes
(`make cover` does both). The money path is what closes, pays and announces windows; its rules
must be checkable in seconds without servers (tests/unit, fakes of the ports).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FLOOR = 85.0
MONEY_PATH = (
    "src/payment_window/service.py",
    "src/payment_window/overrides.py",
    "src/payment_window/transitions.py",
    "src/payment_window/checkouts.py",
    "src/payment_window/after_commit.py",
    "src/payment_window/index_repairs.py",
    "src/payment_window/expiry.py",
    "src/payment_window/expiry_group.py",
    "src/payment_window/expiry_retries.py",
    "src/payment_window/reminders.py",
    "src/payment_window/rotation.py",
    "src/payment_window/recheck.py",
    "src/payment_window/paid_elsewhere.py",
    "src/payment_window/webhooks.py",
)


def main(report_path: str) -> int:
    files = json.loads(Path(report_path).read_text(encoding="utf-8"))["files"]
    short = []
    for name in MONEY_PATH:
        covered = files.get(name, {}).get("summary", {}).get("percent_covered", 0.0)
        print(f"unit coverage {name}: {covered:.0f}%")
        if covered < FLOOR:
            short.append(name)
    if short:
        print(f"below {FLOOR:.0f}% by the unit tests alone: {', '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".coverage-unit.json"))
