"""`worktool train`: the model is fitted deterministically from a corpus directory, cross-validated by
writer, and the builtin model is the one the corpus in the repository gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from classifiers import BUILTIN_MODEL
from classifiers.labelled import load_labelled
from classifiers.training import (
    CORPUS_DIR,
    TrainingError,
    corpus_files,
    read_corpus,
    train,
)
from commands.accuracy import cli_train
from operators.type_model import TypeModel
from tests.support import DATA


def _small_corpus(tmp_path: Path, writers: int = 3, per_writer: int = 60) -> Path:
    """A few writers' files cut from the repository's corpus (with their rosters)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for messages, roster in corpus_files(CORPUS_DIR, earlier=False)[:writers]:
        rows = load_labelled(messages)[:per_writer]
        (corpus / messages.name).write_text("".join(_line(r) for r in rows), encoding="utf-8")
        shutil.copy(roster, corpus / roster.name)
    return corpus


def _line(row: dict) -> str:
    import orjson

    return orjson.dumps(row).decode() + "\n"


def test_training_twice_gives_the_same_model_and_a_cross_validated_figure_per_writer(tmp_path):
    corpus = _small_corpus(tmp_path)
    steps: list[tuple[str, int, int]] = []
    a = train(corpus, c_grid=(3.0, 10.0), progress=lambda *s: steps.append(s))
    b = train(corpus, c_grid=(3.0, 10.0))
    assert a.model.vocabulary == b.model.vocabulary
    assert np.array_equal(a.model.weights, b.model.weights) and np.array_equal(a.model.bias, b.model.bias)
    assert a.model.meta == b.model.meta
    meta = a.model.meta
    assert meta["cv_scheme"] == "leave-one-writer-out" and len(meta["writers"]) >= 3
    assert 0.0 < meta["cv_type_accuracy"] <= 1.0 and meta["c"] in (3.0, 10.0)
    assert steps and steps[-1][1] == steps[-1][2]  # the progress bar reaches its end
    assert len(a.cv_predictions) == len(a.corpus.examples)


def test_train_writes_a_model_that_loads_and_reports_its_figures(tmp_path, capsys):
    out = tmp_path / "model.npz"
    assert cli_train(_small_corpus(tmp_path), out) == 0
    printed = capsys.readouterr().out
    assert "cross-validation" in printed and "Model written to" in printed
    assert TypeModel.load(out).meta["examples"] > 100


def test_a_corpus_directory_without_sets_or_rosters_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(TrainingError, match="not found"):
        corpus_files(tmp_path / "missing")
    with pytest.raises(TrainingError, match="no \\*_messages.jsonl"):
        corpus_files(tmp_path)
    (tmp_path / "w_messages.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(TrainingError, match="no roster"):
        corpus_files(tmp_path)
    assert cli_train(tmp_path, tmp_path / "m.npz") == 2
    assert "no roster" in capsys.readouterr().out


def test_the_builtin_model_was_trained_on_the_corpus_as_it_is_in_the_repository():
    """Whoever changes the corpus retrains (`worktool train`) and commits the model with it."""
    meta = TypeModel.load(BUILTIN_MODEL).meta
    corpus = read_corpus(corpus_files(CORPUS_DIR))
    assert meta["corpus_sha256"] == corpus.digest, "corpus changed: run `worktool train`"
    assert meta["examples"] == len(corpus.examples)


def test_the_blind_sets_are_not_in_the_training_corpus():
    files = {m.name for m, _ in corpus_files(CORPUS_DIR)}
    assert not any(name.startswith(("blind_a", "blind_b")) for name in files)
    corpus_texts = {r["text"] for m, _ in corpus_files(CORPUS_DIR) for r in load_labelled(m) if r["text"]}
    for name in ("blind_a", "blind_b"):
        blind = {r["text"] for r in load_labelled(DATA / f"{name}_messages.jsonl") if len(r["text"]) > 6}
        assert len(blind & corpus_texts) <= 2, blind & corpus_texts  # chance repeats of common phrases only


def test_without_scikit_learn_train_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as after `pip install -e .` (no train extra)
    assert cli_train(_small_corpus(tmp_path), tmp_path / "m.npz") == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().out
    assert not (tmp_path / "m.npz").exists()
