"""README's settings table is what config.py says: every setting, its default, its meaning."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from payment_window.config import Settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "settings_table.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_settings_table_is_the_one_config_py_generates() -> None:
    generator = _generator()
    readme = generator.README.read_text(encoding="utf-8")
    assert generator.current(readme) == generator.render(), (
        f"README.md's settings table differs from config.py: run {generator.REGENERATE}"
    )


def test_every_setting_is_described_for_the_table_and_help() -> None:
    undescribed = [
        f"PW_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not undescribed, f"give these a Field(description=...): {undescribed}"


def test_the_table_lists_every_setting_once() -> None:
    table = _generator().render()
    for name in Settings.model_fields:
        assert table.count(f"| `PW_{name.upper()}` |") == 1, name
