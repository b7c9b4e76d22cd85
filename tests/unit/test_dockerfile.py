"""The Dockerfile, checked statically (no Docker engine here), and by hadolint when installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from payment_window.api.routes.health import router as health_router

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in _final_stage() if kw == keyword]
    assert len(values) == 1, f"one {keyword} in the final stage"
    parsed = json.loads(values[0])
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def test_the_image_is_built_in_stages_from_a_pinned_base() -> None:
    instructions = _instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS builder\b", froms[0], re.IGNORECASE)
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    for base in froms:
        image = base.split()[0]
        image = args.get(image.strip("${}"), image) if image.startswith("${") else image
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"unpinned base {image}"
    assert any(
        keyword == "COPY" and rest.startswith("--from=builder") for keyword, rest in _final_stage()
    )


def test_nothing_is_fetched_with_add() -> None:
    for keyword, rest in _instructions():
        assert not (keyword == "ADD" and re.search(r"https?://", rest)), rest


def test_the_process_runs_as_a_non_root_user_set_before_the_entrypoint() -> None:
    stage = _final_stage()
    keywords = [keyword for keyword, _ in stage]
    assert "USER" in keywords and "ENTRYPOINT" in keywords
    user_at = max(i for i, keyword in enumerate(keywords) if keyword == "USER")
    assert user_at < keywords.index("ENTRYPOINT")
    user = stage[user_at][1].split(":")[0]
    assert user not in {"root", "0"}


def test_the_entrypoint_is_the_installed_command_serving_on_all_interfaces() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert _exec_form("ENTRYPOINT") == ["payment-window"]
    assert "payment-window" in scripts
    assert _exec_form("CMD") == ["serve", "--host", "0.0.0.0", "--port", "8000"]


def test_the_healthcheck_asks_the_liveness_route_with_python_alone() -> None:
    checks = [rest for keyword, rest in _final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "curl" not in checks[0] and "wget" not in checks[0]
    assert "urllib.request" in checks[0]
    path = re.search(r"http://127\.0\.0\.1:8000(/\w+)", checks[0])
    assert path
    assert path.group(1) in {route.path for route in health_router.routes}  # type: ignore[attr-defined]


def test_the_build_context_leaves_out_local_state() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert {"!pyproject.toml", "!src/"} <= set(ignore)


def test_hadolint_finds_nothing(unavailable: Callable[[str], NoReturn]) -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(ROOT / ".venv-checkov" / "bin")
    )
    if hadolint is None:
        unavailable("hadolint is not installed (scripts/checkov.sh --install brings it)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_in_production_mode() -> None:
    env_lines = " ".join(rest for keyword, rest in _final_stage() if keyword == "ENV")
    assert re.search(r"(^|\s)PW_ENV=production(\s|$)", env_lines), env_lines


def test_the_build_context_leaves_out_the_stripe_stand_in() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in ignore
    # Only its metadata, so that `uv sync --locked` can check the lock whole.
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert [line for line in rules if "devstripe" in line] == ["!devstripe/pyproject.toml"]


def test_the_wheel_holds_no_stripe_stand_in(tmp_path: Path) -> None:
    # The wheel the Dockerfile's `uv sync --no-editable` builds and installs.
    uv = ROOT / ".venv-uv" / "bin" / "uv"
    result = subprocess.run(
        [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("payment_window-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.startswith("payment_window/service.py") for name in names)
    assert not [name for name in names if "devstripe" in name]
    # The timer element's modules: links in the source tree, the files themselves in the wheel.
    with zipfile.ZipFile(wheel) as archive:
        for source in (ROOT / "clients" / "web" / "src").glob("*.js"):
            packed = archive.read(f"payment_window/web/static/{source.name}")
            assert packed == source.read_bytes(), source.name
