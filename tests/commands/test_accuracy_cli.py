"""`worktool accuracy`: the blind sets decide the verdict, the rules alone are shown beside the model,
and a set or a model that cannot be read is a clear error."""

from __future__ import annotations

import subprocess
import sys

import orjson

from commands.accuracy import cli_accuracy
from tests.support import DATA, REPO

ROSTER = DATA / "labelled_roster.yaml"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "commands.cli", "accuracy", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200", **env},
    )  # fmt: skip


def test_the_classifier_meets_the_targets_on_the_blind_sets_as_a_user_runs_it():
    run = _run()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = run.stdout
    assert "blind_a" in out and "blind_b" in out and "w15" in out
    assert "cross-validated" in out and "confusion matrix" in out
    assert "meets the targets" in out


def test_the_rules_alone_fall_short_on_the_blind_sets():
    run = _run("--rules-only")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "is below the targets" in run.stdout


def test_one_set_below_the_targets_exits_1(tmp_path, capsys):
    data = tmp_path / "set.jsonl"
    row = {
        "text": "好的",
        "sender_name": "张姐",
        "expected_sender_type": "user",
        "expected_message_type": "chat_complaint",
    }
    data.write_bytes(orjson.dumps(row) + b"\n")
    assert cli_accuracy(data, ROSTER) == 1
    assert "is below the targets" in capsys.readouterr().out


def test_a_missing_set_or_an_unreadable_model_exits_2(tmp_path):
    assert cli_accuracy(tmp_path / "missing.jsonl") == 2
    broken = tmp_path / "model.npz"
    broken.write_bytes(b"garbage")
    run = _run(WORKTOOL_CLASSIFIER_MODEL=str(broken))
    assert run.returncode == 2 and "cannot load the message-type model" in run.stdout
