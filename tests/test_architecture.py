"""The shape of the code, checked like behaviour: one-way layers (import-linter contracts in
pyproject.toml), a repository that points at nothing outside it, a clean linter."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def test_layers_point_one_way() -> None:
    proc = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


def test_ruff_check_and_format_are_clean() -> None:
    check = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run([_tool("ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


_OUTSIDE = re.compile(
    r"\.\./shared|shared/(domain|seeds)|RULES\.md|DESIGN\.md|bytewax-notes|worktool-platform\.md"
)


def test_the_repository_stands_alone() -> None:
    """Nothing in the repository refers to documents that are not in it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    offenders = []
    for name in tracked.stdout.splitlines():
        path = REPO / name
        if (
            path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sql", ".txt", ".json"}
            or not path.is_file()
        ):
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line) and name != "tests/test_architecture.py":
                offenders.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
