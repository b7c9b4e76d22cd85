"""The dashboard and its documentation name exactly the metrics the code emits.

Emitted names are found by reading src/ with `ast`: the first argument (or `name=`) of every
`.increment`, `.decrement`, `.gauge`, `.distribution`, `.histogram` or `.timing` call that is a
string literal, or a module-level constant holding one, starting with `payments.`.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "payment_window"
DASHBOARD_JSON = ROOT / "docs" / "analytics" / "stripe-payments-dashboard.json"
DASHBOARD_MD = ROOT / "docs" / "analytics" / "stripe-payments-dashboard.md"
METRIC_CALLS = {"increment", "decrement", "gauge", "distribution", "histogram", "timing"}
NAME = re.compile(r"payments\.[a-z_.]+")
PREFIX = "payments."


def _constants(tree: ast.Module) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = value.value
    return found


def _metric_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg in ("name", "metric"):
            return keyword.value
    return call.args[0] if call.args else None


def emitted_metrics() -> dict[str, set[str]]:
    """Metric name → the kinds of call that emit it, over every module in src/."""
    emitted: dict[str, set[str]] = {}
    dynamic: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in METRIC_CALLS
            ):
                continue
            argument = _metric_argument(node)
            name: str | None = None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                name = argument.value
            elif isinstance(argument, ast.Name):
                name = constants.get(argument.id)
            elif isinstance(argument, ast.JoinedStr):
                text = ast.unparse(argument)
                if PREFIX in text:
                    dynamic.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
            if name is not None and name.startswith(PREFIX):
                emitted.setdefault(name, set()).add(node.func.attr)
    # A name built at run time cannot be checked against the dashboard, and is one step from
    # an unbounded set of metric names.
    assert not dynamic, f"metric names must be literals: {dynamic}"
    return emitted


def _queries(node: Any) -> list[str]:
    """Every query string of the dashboard (`q` in classic requests, `query` in formula ones)."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("q", "query") and isinstance(v, str)]
        for value in node.values():
            found += _queries(value)
        return found
    if isinstance(node, list):
        return [query for item in node for query in _queries(item)]
    return []


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text())
    return loaded


def dashboard_metrics() -> set[str]:
    return {name.rstrip(".") for query in _queries(dashboard()) for name in NAME.findall(query)}


def source_literals() -> set[str]:
    """Every `payments.…` string in src/: metric names and analytics event names alike."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.update(name.rstrip(".") for name in NAME.findall(node.value))
    return found


def test_the_scan_finds_the_metrics_of_the_story() -> None:
    emitted = emitted_metrics()

    assert {
        "payments.window.expired_count",
        "payments.window.extension_count",
        "payments.window.override_count",
    } <= set(emitted)


def test_every_emitted_metric_is_on_the_dashboard() -> None:
    missing = set(emitted_metrics()) - dashboard_metrics()

    assert not missing, f"emitted but not on the dashboard: {sorted(missing)}"


def test_every_metric_on_the_dashboard_is_emitted() -> None:
    unknown = dashboard_metrics() - set(emitted_metrics())

    assert not unknown, f"on the dashboard but never emitted by src/: {sorted(unknown)}"


def test_the_dashboard_is_an_importable_ordered_dashboard() -> None:
    board = dashboard()

    assert board["title"] and board["layout_type"] == "ordered"
    kinds: set[str] = set()

    def walk(widgets: list[dict[str, Any]]) -> None:
        for widget in widgets:
            definition = widget["definition"]
            kinds.add(definition["type"])
            if definition["type"] == "group":
                assert definition["layout_type"] == "ordered"
                walk(definition["widgets"])
            else:
                assert definition.get("title") and definition["requests"], definition

    walk(board["widgets"])
    assert {"timeseries", "query_value", "distribution"} <= kinds
    # Counts are shown as counts per interval, never as a per-second rate.
    emitted = emitted_metrics()
    for query in _queries(board):
        for name in NAME.findall(query):
            if emitted.get(name) == {"increment"}:
                assert ".as_count()" in query, f"{name} should be queried .as_count(): {query}"


def test_the_documentation_explains_every_metric_and_names_nothing_else() -> None:
    text = DASHBOARD_MD.read_text()
    named = {name.rstrip(".") for name in NAME.findall(text)}

    undocumented = set(emitted_metrics()) - named
    assert not undocumented, f"not explained in {DASHBOARD_MD.name}: {sorted(undocumented)}"
    assert "payments.checkout.expired" in named
    unknown = named - source_literals()
    assert not unknown, f"{DASHBOARD_MD.name} names what src/ never emits: {sorted(unknown)}"
