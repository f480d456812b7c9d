"""`worktool chaos`: what it runs, and that it refuses bad usage clearly."""

from __future__ import annotations

import subprocess
import sys

from commands.chaos import REPO, chaos_command


def test_chaos_command_selects_the_chaos_marker_at_the_given_scale() -> None:
    command = chaos_command(10, "spool", ["-x"])
    assert command[:3] == [sys.executable, "-m", "pytest"]
    assert command[command.index("-m", 3) + 1] == "chaos"
    assert command[command.index("-k") + 1] == "spool"
    assert command[command.index("--timeout") + 1] == "3000"
    assert "-x" in command and command[-1] == str(REPO / "tests")


def test_chaos_refuses_a_scale_below_one() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "commands.cli", "chaos", "--scale", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "at least 1" in done.stderr


def test_chaos_collects_the_failure_scenarios() -> None:
    """The marker is in use: a chaos run would find the outage and hostile-input scenarios."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "chaos", "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_chaos_postgres.py" in done.stdout
    assert "test_hostile_callbacks.py" in done.stdout
