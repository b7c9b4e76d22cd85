"""README's settings table, generated from `src/payment_window/config.py`.

    .venv/bin/python scripts/settings_table.py           # rewrite the table in README.md
    .venv/bin/python scripts/settings_table.py --check   # exit 1 if README.md differs

One row per setting: its `PW_` variable, its default and its `Field(description=...)`, so a new
setting needs only a description to be documented (`tests/unit/test_settings_table.py` fails
while README.md and config.py disagree).
"""

from __future__ import annotations

import sys
from pathlib import Path

from payment_window.config import Settings, shown_default

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- settings-table: generated from config.py by scripts/settings_table.py -->"
END = "<!-- /settings-table -->"
REGENERATE = ".venv/bin/python scripts/settings_table.py"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    """The markdown table, between its markers."""
    rows = [BEGIN, "| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = shown_default(field)
        explicit = isinstance(field.json_schema_extra, dict) and (
            "shown_default" in field.json_schema_extra
        )
        shown = default if explicit or default in ("unset", "empty") else f"`{default}`"
        rows.append(f"| `PW_{name.upper()}` | {_cell(shown)} | {_cell(field.description or '')} |")
    rows.append(END)
    return "\n".join(rows)


def current(readme: str) -> str:
    """The table README.md holds now, between its markers."""
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[start:end]


def main(argv: list[str]) -> int:
    readme = README.read_text(encoding="utf-8")
    table = render()
    if current(readme) == table:
        return 0
    if "--check" in argv:
        print(f"README.md's settings table differs from config.py: run {REGENERATE}")
        return 1
    README.write_text(readme.replace(current(readme), table), encoding="utf-8")
    print("README.md: settings table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
