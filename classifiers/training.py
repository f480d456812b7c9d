"""`worktool train`: the message-type model (operators/type_model.py) fitted on the labelled corpus
(tests/data/corpus/, docs/labelling.md), with its cross-validated accuracy.

Each sender family gets its own multinomial logistic regression (scikit-learn, lbfgs: deterministic) on
binary features, L2-normalised. The regularisation C is chosen by leave-one-writer-out cross-validation:
each writer's file is predicted by a model trained on the other writers only, which is how the model
meets phrasing it has never seen. scikit-learn is needed only here (the `train` extra); the product
reads the saved weights with numpy alone.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.labelled import labelled_message, load_labelled, roster_for
from operators.classify import RuleClassifier
from operators.type_model import FAMILY_TYPES, FORMAT, LABELS, ModelInput, TypeModel, features
from worktool.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT / "tests" / "data" / "corpus"
C_GRID = (10.0, 30.0, 100.0)
MIN_DF = 2  # a feature seen in one message only is noise
_ABSENT_BIAS = -30.0  # a type the corpus has no example of for a family: never predicted


class TrainingError(RuntimeError):
    """The corpus cannot be read or is not enough to train on."""


@dataclass(frozen=True, slots=True)
class Example:
    x: ModelInput
    label: str
    writer: str
    text: str  # as written, for error listings


@dataclass
class Corpus:
    examples: list[Example] = field(default_factory=list)
    # messages the rules decide by structure (robots, media, internal talk): (writer, expected, rules' type)
    structural: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    # rules-only predictions of the examples, in the same order (for the comparison in the report)
    rule_predictions: list[str | None] = field(default_factory=list)
    sender_errors: int = 0
    digest: str = ""


# The first labelled sets (written before the corpus, by the guidelines' predecessors in docs/rules.md;
# the rules were tuned on them): training material too, each its own writer.
EARLIER_SETS = ("labelled", "blind", "blind2")


def corpus_files(directory: Path, earlier: bool = True) -> list[tuple[Path, Path]]:
    """Every `NAME_messages.jsonl` of the directory with its `NAME_roster.yaml`, sorted by name, and the
    earlier labelled sets beside the directory (when `earlier`)."""
    if not directory.is_dir():
        raise TrainingError(f"corpus directory not found: {directory}")
    files = []
    if earlier:
        for name in EARLIER_SETS:
            messages = directory.parent / f"{name}_messages.jsonl"
            if messages.is_file():
                files.append((messages, roster_for(messages)))
    for messages in sorted(directory.glob("*_messages.jsonl")):
        roster = messages.with_name(messages.name.removesuffix("_messages.jsonl") + "_roster.yaml")
        if not roster.is_file():
            raise TrainingError(f"{messages.name} has no roster beside it ({roster.name})")
        files.append((messages, roster))
    if not files:
        raise TrainingError(f"no *_messages.jsonl in {directory}")
    return files


def read_corpus(files: Sequence[tuple[Path, Path]]) -> Corpus:
    """The model's inputs of every message the model would type, read by the rules as in production."""
    corpus = Corpus()
    digest = hashlib.sha256()
    for messages, roster in files:
        digest.update(messages.read_bytes() + roster.read_bytes())
        writer = messages.name.removesuffix("_messages.jsonl")
        rules = RuleClassifier(load_config(roster), cache_size=0)
        for i, row in enumerate(load_labelled(messages)):
            m = labelled_message(row, i)
            sender_type, _ = rules.senders.resolve(m.sender_name, m.room_type)
            if sender_type != row["expected_sender_type"]:
                corpus.sender_errors += 1
            d = rules.types.decide(m, sender_type)
            expected = row["expected_message_type"]
            x = rules.model_input(m, sender_type, d) if rules.model_reads(m, sender_type, d) else None
            if x is None or expected not in FAMILY_TYPES[x.family]:
                corpus.structural.append((writer, expected, d.message_type))
                continue
            corpus.examples.append(Example(x, expected, writer, row.get("text", "")))
            corpus.rule_predictions.append(d.message_type)
    corpus.digest = digest.hexdigest()
    return corpus


# ---------------------------------------------------------------------------------------------------
# fitting


def _vocabulary(feature_lists: Iterable[list[str]]) -> list[str]:
    df: Counter[str] = Counter()
    for feats in feature_lists:
        df.update(feats)
    return sorted(f for f, n in df.items() if n >= MIN_DF)


def _matrix(feature_lists: Sequence[list[str]], index: dict[str, int]) -> Any:
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for feats in feature_lists:
        cols = [i for f in feats if (i := index.get(f)) is not None]
        indices += cols
        data += [1.0 / math.sqrt(len(cols))] * len(cols) if cols else []
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(feature_lists), len(index)))


def fit(
    examples: Sequence[Example],
    feature_lists: Sequence[list[str]],
    c: float,
    segment: Callable[[str], Iterable[str]],
    meta: dict[str, Any] | None = None,
) -> TypeModel:
    from sklearn.linear_model import LogisticRegression

    vocabulary = _vocabulary(feature_lists)
    index = {f: i for i, f in enumerate(vocabulary)}
    x = _matrix(feature_lists, index)
    column = {label: i for i, label in enumerate(LABELS)}
    weights = np.zeros((len(vocabulary), len(LABELS)))
    bias = np.full(len(LABELS), _ABSENT_BIAS)
    for family, types in FAMILY_TYPES.items():
        rows = [i for i, e in enumerate(examples) if e.x.family == family]
        labels = [examples[i].label for i in rows]
        present = sorted(set(labels), key=types.index)
        if len(present) < 2:
            for label in present:
                bias[column[label]] = 0.0
            continue
        # balanced: every type weighs the same whatever its share of the corpus (the goal is a recall
        # floor per type; leave-one-writer-out: lowest recall 0.81-0.85 -> 0.85-0.87, accuracy equal)
        lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        lr.fit(x[rows], labels)
        cols = [column[label] for label in lr.classes_]
        if len(cols) == 2:  # sklearn keeps one row for two classes: p(second) = sigmoid(w.x + b)
            weights[:, cols[1]] = lr.coef_[0]
            bias[cols[0]], bias[cols[1]] = 0.0, lr.intercept_[0]
        else:
            weights[:, cols] = lr.coef_.T
            bias[cols] = lr.intercept_
    return TypeModel(vocabulary, weights, bias, LABELS, meta, segment)


def _folds(examples: Sequence[Example], k: int = 5) -> list[list[int]]:
    """Leave one writer out when there are at least three writers; else k folds, round-robin per type."""
    writers = sorted({e.writer for e in examples})
    if len(writers) >= 3:
        return [[i for i, e in enumerate(examples) if e.writer == w] for w in writers]
    folds: list[list[int]] = [[] for _ in range(k)]
    seen: Counter[str] = Counter()
    for i, e in enumerate(examples):
        folds[seen[e.label] % k].append(i)
        seen[e.label] += 1
    return folds


def cross_validate(
    examples: Sequence[Example],
    feature_lists: Sequence[list[str]],
    c: float,
    segment: Callable[[str], Iterable[str]],
    progress: Callable[[], None] | None = None,
) -> list[str]:
    """Each example predicted by a model that never saw its fold (its writer)."""
    predicted: list[str] = [""] * len(examples)
    for held in _folds(examples):
        held_set = set(held)
        train = [i for i in range(len(examples)) if i not in held_set]
        model = fit([examples[i] for i in train], [feature_lists[i] for i in train], c, segment)
        for i in held:
            predicted[i] = model.predict(examples[i].x)[0]
        if progress:
            progress()
    return predicted


def accuracy(expected: Sequence[str | None], predicted: Sequence[str | None]) -> float:
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected) if expected else 0.0


@dataclass
class TrainingReport:
    model: TypeModel
    corpus: Corpus
    cv_by_c: dict[float, float]
    chosen_c: float
    cv_predictions: list[str]


def train(
    directory: Path = CORPUS_DIR,
    c_grid: Sequence[float] = C_GRID,
    segment: Callable[[str], Iterable[str]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainingReport:
    """Read the corpus, choose C by cross-validation, fit on everything."""
    try:
        import sklearn
    except ImportError as e:
        raise TrainingError("training needs scikit-learn: pip install -e '.[train]'") from e
    from operators.type_model import default_segmenter

    segment = segment or default_segmenter()
    corpus = read_corpus(corpus_files(directory))
    if len(corpus.examples) < 50:
        raise TrainingError(f"only {len(corpus.examples)} messages to train on in {directory}")
    feature_lists = [features(e.x, segment) for e in corpus.examples]
    expected = [e.label for e in corpus.examples]
    folds = len(_folds(corpus.examples))
    cv_by_c: dict[float, float] = {}
    predictions: dict[float, list[str]] = {}
    for n, c in enumerate(c_grid):
        done = [0]

        def step(n: int = n, done: list[int] = done) -> None:
            done[0] += 1
            if progress:
                progress(f"cross-validating C={c_grid[n]:g}", n * folds + done[0], len(c_grid) * folds)

        predictions[c] = cross_validate(corpus.examples, feature_lists, c, segment, step)
        cv_by_c[c] = accuracy(expected, predictions[c])
    chosen = max(c_grid, key=lambda c: (cv_by_c[c], -c))  # the smaller C on a tie: the simpler model
    writers = sorted({e.writer for e in corpus.examples})
    meta = {
        "format": FORMAT,
        "c": chosen,
        "min_df": MIN_DF,
        "examples": len(corpus.examples),
        "writers": writers,
        "corpus_sha256": corpus.digest,
        "cv_scheme": "leave-one-writer-out" if len(writers) >= 3 else f"{folds}-fold",
        "cv_type_accuracy": round(cv_by_c[chosen], 4),
        "rules_type_accuracy": round(accuracy(expected, corpus.rule_predictions), 4),
        "sklearn": sklearn.__version__,
    }
    if progress:
        progress("fitting on the whole corpus", len(c_grid) * folds, len(c_grid) * folds)
    model = fit(corpus.examples, feature_lists, chosen, segment, meta)
    return TrainingReport(model, corpus, cv_by_c, chosen, predictions[chosen])
