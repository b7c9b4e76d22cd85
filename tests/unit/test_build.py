"""The build installs exactly the lock: the Makefile, the CI script, checkov.sh and the Dockerfile
are read, and every install step in them must come from uv.lock (or the hashed uv pin)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv-uv" / "bin" / "uv"
INSTALLERS = (
    "Makefile",
    ".ci/run",
    "scripts/checkov.sh",
    "scripts/system-deps.sh",
    "scripts/lambda-zip.sh",
    "Dockerfile",
)
UV_PIN = "scripts/uv-requirements.txt"
# What `uv export --locked` writes for the Lambda zip (scripts/lambda-zip.sh): the lock, hashed.
LOCK_EXPORT = "build/wheels/requirements.txt"


def _commands(path: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / path).read_text())
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _unlocked_installs(line: str) -> list[str]:
    """What on `line` installs a Python or node package from outside the lock."""
    found = []
    for match in re.finditer(r"\bpip3?\s+install\b(?P<args>[^;&|]*)", line):
        args = match.group("args")
        hashed = "--require-hashes" in args and (
            f"-r {UV_PIN}" in args or f"-r {LOCK_EXPORT}" in args
        )
        own_wheel_only = "--no-deps" in args and "--no-index" in args
        if not (hashed or own_wheel_only):
            found.append(match.group(0))
    if re.search(r"\buv\s+pip\s+install\b", line):
        found.append("uv pip install")
    for match in re.finditer(r"\buv\s+(sync|run)\b[^;&|]*", line):
        if not re.search(r"--(locked|frozen)\b", match.group(0)):
            found.append(match.group(0))
    if re.search(r"\bnpm\s+(install|i)\b", line) or re.search(r"\bnpx\b", line):
        found.append("npm install")
    return found


@pytest.mark.parametrize("path", INSTALLERS)
def test_every_install_step_comes_from_the_lock(path: str) -> None:
    offending = [(line, found) for line in _commands(path) if (found := _unlocked_installs(line))]
    assert not offending, f"{path} installs outside uv.lock: {offending}"


def test_the_checker_itself_catches_a_loose_install() -> None:
    assert _unlocked_installs("$(BIN)/python -m pip install -e '.[test]'")
    assert _unlocked_installs("pip install --require-hashes -r other.txt")
    assert _unlocked_installs("uv sync --group test")
    assert _unlocked_installs("uv pip install ruff")
    assert _unlocked_installs("npm install left-pad")
    assert not _unlocked_installs(f"pip install --require-hashes -r {UV_PIN}")
    assert not _unlocked_installs("$(UV) sync --locked --group test")
    assert _unlocked_installs("pip install --no-deps --target x some-package")


def test_the_lambda_zip_installs_the_lock_exported() -> None:
    lines = _commands("scripts/lambda-zip.sh")
    assert any("uv" in line and "export --locked" in line and LOCK_EXPORT in line for line in lines)


def test_the_dockerfile_installs_the_lock_without_dev_groups() -> None:
    syncs = [line for line in _commands("Dockerfile") if re.search(r"\buv sync\b", line)]
    assert len(syncs) == 1
    assert "--locked" in syncs[0] and "--no-dev" in syncs[0] and "--group" not in syncs[0]
    copied = " ".join(line for line in _commands("Dockerfile") if line.startswith("COPY"))
    assert "uv.lock" in copied and UV_PIN in copied
    assert "devstripe/src" not in copied and "COPY devstripe " not in copied


def test_uv_itself_is_pinned_by_hash() -> None:
    requirements = [line for line in _commands(UV_PIN) if not line.startswith("--hash")]
    assert len(requirements) == 1
    assert re.fullmatch(r"uv==[\d.]+(\s+--hash=sha256:[0-9a-f]{64}){2,}", requirements[0])


def test_every_dependency_is_in_the_lock_with_hashes() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock["package"]:
        source = package.get("source", {})
        if "registry" not in source:
            continue  # the project itself and devstripe, from this repository
        artifacts = [
            *package.get("wheels", []),
            *([package["sdist"]] if "sdist" in package else []),
        ]
        assert artifacts, package["name"]
        assert all(a.get("hash", "").startswith("sha256:") for a in artifacts), package["name"]


def _uv() -> str:
    uv = str(UV) if UV.exists() else shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed: `make .venv-uv/bin/uv` bootstraps it")
    return uv


def test_the_lock_matches_pyproject() -> None:
    result = subprocess.run(
        [_uv(), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    assert result.returncode == 0, result.stderr


def test_a_dependency_change_without_a_relock_is_refused_with_what_to_do(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md", UV_PIN):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "devstripe").mkdir()
    shutil.copy(ROOT / "devstripe" / "pyproject.toml", tmp_path / "devstripe" / "pyproject.toml")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('  "fastapi>=0.115",', '  "fastapi>=0.115",\n  "six",')
    )
    (tmp_path / ".venv-uv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-uv" / "bin" / "uv").symlink_to(_uv())
    result = subprocess.run(
        ["make", "--no-print-directory", "lock-check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "UV_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "make lock" in result.stderr


def test_the_build_backend_is_the_locked_one() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if p["name"] == "setuptools"}
    for pyproject in (ROOT / "pyproject.toml", ROOT / "devstripe" / "pyproject.toml"):
        requires = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
        assert requires == [f"setuptools=={locked['setuptools']}"], pyproject
