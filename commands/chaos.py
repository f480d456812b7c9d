"""`worktool chaos`: the failure-path and fuzz tests (pytest marker `chaos`) run at a larger scale.

CI runs the same tests at scale 1 on every change; this command is the long run an operator or a
developer starts before a release or after touching a failure path. It needs a source checkout with the
dev extras (`pip install -e '.[dev]'`), because the scenarios are the test suite's own."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def chaos_command(scale: int, select: str | None, extra: list[str]) -> list[str]:
    """The pytest command line of a chaos run (all chaos tests, or those matching `select`)."""
    command = [sys.executable, "-m", "pytest", "-m", "chaos", "-q", "-p", "no:cacheprovider"]
    # Longer scenarios need more than the suite's default per-test timeout.
    command += ["--timeout", str(300 * scale)]
    if select:
        command += ["-k", select]
    return [*command, *extra, str(REPO / "tests")]


def cli_chaos(scale: int, select: str | None, extra: list[str]) -> int:
    if scale < 1:
        print("--scale must be at least 1", file=sys.stderr)
        return 2
    if not (REPO / "tests" / "conftest.py").exists() or importlib.util.find_spec("pytest") is None:
        print(
            "worktool chaos runs the test suite's failure scenarios: it needs a source checkout "
            "installed with the dev extras (pip install -e '.[dev]')",
            file=sys.stderr,
        )
        return 2
    env = {**os.environ, "WORKTOOL_CHAOS_SCALE": str(scale)}
    print(f"chaos run at scale {scale}: {' '.join(chaos_command(scale, select, extra)[3:])}", file=sys.stderr)
    return subprocess.call(chaos_command(scale, select, extra), cwd=REPO, env=env)
