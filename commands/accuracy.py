"""`worktool accuracy` (the classifier on the labelled sets) and `worktool train` (the message-type model
rebuilt from the corpus). docs/labelling.md says how the sets were written; benchmarks/README.md keeps
the figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from classifiers import BUILTIN_MODEL, ClassifierUnavailable, load_type_model
from classifiers.labelled import Evaluation, evaluate, load_labelled, per_class, roster_for
from operators.classify import RuleClassifier
from operators.type_model import TypeModel
from worktool.config import BusinessConfig, ConfigError, load_config
from worktool.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "tests" / "data"
# Written from docs/labelling.md alone, before any training, by writers who saw neither the rules nor the
# corpus; never used for training or for choosing anything. The figures that count.
BLIND_SETS = ("blind_a", "blind_b")

MESSAGE_TYPE_TARGET = 0.93
SENDER_TYPE_TARGET = 0.99
TYPE_RECALL_FLOOR = 0.85  # no message type below this recall


def _meets(ev: Evaluation, recall_floor: bool = True) -> tuple[bool, list[str]]:
    """Whether a set meets the targets, and what falls short."""
    short = []
    if ev.overall.type_accuracy < MESSAGE_TYPE_TARGET:
        short.append(f"message type {ev.overall.type_accuracy:.1%} < {MESSAGE_TYPE_TARGET:.0%}")
    if ev.overall.sender_accuracy < SENDER_TYPE_TARGET:
        short.append(f"sender type {ev.overall.sender_accuracy:.1%} < {SENDER_TYPE_TARGET:.0%}")
    for label, support, _, recall in per_class(ev.pairs) if recall_floor else ():
        if support and recall < TYPE_RECALL_FLOOR:
            short.append(f"{label} recall {recall:.0%} < {TYPE_RECALL_FLOOR:.0%}")
    return not short, short


def _lowest_recall(ev: Evaluation) -> str:
    recalls = [(recall, label) for label, support, _, recall in per_class(ev.pairs) if support]
    recall, label = min(recalls)
    return f"{recall:.0%} {label}"


def _print_classes(console: Console, ev: Evaluation, title: str) -> None:
    table = Table(title=f"{title}: per class")
    for col in ("type", "support", "precision", "recall"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for label, support, precision, recall in per_class(ev.pairs):
        table.add_row(label, str(support), f"{precision:.0%}", f"{recall:.0%}")
    console.print(table)
    labels = sorted({e for e, _ in ev.pairs} | {p for _, p in ev.pairs})
    counts = Counter(ev.pairs)
    matrix = Table(title=f"{title}: confusion matrix (rows expected, columns predicted, numbered as rows)")
    matrix.add_column("expected")
    for i in range(len(labels)):
        matrix.add_column(str(i + 1), justify="right")
    for i, e in enumerate(labels):
        matrix.add_row(f"{i + 1} {e}", *[str(counts[(e, p)] or "") for p in labels])
    console.print(matrix)


def _print_errors(console: Console, ev: Evaluation) -> None:
    for row, c in ev.errors:
        console.print(
            f"{row['expected_sender_type']}/{row['expected_message_type']} -> "
            f"{c.sender_type}/{c.message_type}  {row['text']!r}  [{c.reason}]",
            markup=False,
        )


def _merge(evs: list[Evaluation]) -> Evaluation:
    out = Evaluation()
    for ev in evs:
        out.overall.n += ev.overall.n
        out.overall.type_ok += ev.overall.type_ok
        out.overall.sender_ok += ev.overall.sender_ok
        out.pairs += ev.pairs
        out.errors += ev.errors
    return out


def cli_accuracy(
    dataset: Path | None = None,
    roster: Path | None = None,
    show_errors: bool = False,
    rules_only: bool = False,
) -> int:
    """With a dataset: the classifier (rules + model, or the rules alone) on it, exit 1 below the targets.
    Without: the blind sets (the verdict: message and sender type on each and on both together, the
    recall floor per type on both) and the training material (for reference), rules beside model."""
    console = Console()
    try:
        model = None if rules_only else load_type_model(get_settings().classifier_model)
    except ClassifierUnavailable as e:
        console.print(str(e), style="red", markup=False)
        return 2
    if dataset is not None:
        return _one_set(console, dataset, roster, model, show_errors)
    return _every_set(console, model, show_errors)


def _config(console: Console, dataset: Path, roster: Path | None) -> BusinessConfig | None:
    roster = roster or roster_for(dataset)
    try:
        return load_config(roster if roster.is_file() else get_settings().config_path)
    except ConfigError as e:
        console.print(str(e), style="red", markup=False)
        return None


def _one_set(
    console: Console, dataset: Path, roster: Path | None, model: TypeModel | None, show_errors: bool
) -> int:
    if not dataset.is_file():
        console.print(f"labelled set not found: {dataset}", style="red", markup=False)
        return 2
    config = _config(console, dataset, roster)
    if config is None:
        return 2
    ev = evaluate(load_labelled(dataset), RuleClassifier(config, model=model))
    who = "rules + model" if model is not None else "rules"
    summary = Table(title=f"Classifier ({who}) on {dataset.name}")
    for col in ("split", "messages", "message type", "sender type"):
        summary.add_column(col, justify="right" if col != "split" else "left")
    for name, s in [("all", ev.overall), *sorted(ev.by_split.items())]:
        summary.add_row(name, str(s.n), f"{s.type_accuracy:.1%}", f"{s.sender_accuracy:.1%}")
    console.print(summary)
    _print_classes(console, ev, dataset.stem)
    if show_errors:
        _print_errors(console, ev)
    return _verdict(console, _meets(ev))


def _verdict(console: Console, result: tuple[bool, list[str]]) -> int:
    ok, short = result
    targets = (
        f"message type >= {MESSAGE_TYPE_TARGET:.0%}, sender type >= {SENDER_TYPE_TARGET:.0%}, "
        f"every type's recall >= {TYPE_RECALL_FLOOR:.0%}"
    )
    if ok:
        console.print(f"Accuracy meets the targets ({targets}).")
        return 0
    console.print(f"Accuracy is below the targets ({targets}): " + "; ".join(short))
    return 1


def _every_set(console: Console, model: TypeModel | None, show_errors: bool) -> int:
    from classifiers.training import CORPUS_DIR, corpus_files

    sets: list[tuple[str, Path]] = [(name, DATA / f"{name}_messages.jsonl") for name in BLIND_SETS]
    training = [(m.stem.removesuffix("_messages"), m) for m, _ in corpus_files(CORPUS_DIR)]
    table = Table(title="Message and sender type on the labelled sets")
    for col in ("set", "role", "messages", "rules", "rules + model", "sender type", "lowest recall"):
        table.add_column(col, justify="left" if col in ("set", "role", "lowest recall") else "right")
    blind: list[Evaluation] = []
    for name, path in [*sets, *training]:
        config = _config(console, path, None)
        if config is None:
            return 2
        rows = load_labelled(path)
        rules = evaluate(rows, RuleClassifier(config))
        ev = evaluate(rows, RuleClassifier(config, model=model)) if model is not None else rules
        role = "blind" if name in BLIND_SETS else "training"
        if role == "blind":
            blind.append(ev)
        table.add_row(
            name, role, str(ev.overall.n), f"{rules.overall.type_accuracy:.1%}",
            f"{ev.overall.type_accuracy:.1%}" if model is not None else "-",
            f"{ev.overall.sender_accuracy:.1%}", _lowest_recall(ev),
        )  # fmt: skip
    console.print(table)
    if model is not None and model.meta.get("cv_type_accuracy") is not None:
        meta = model.meta
        console.print(
            f"Training corpus: {meta['examples']} messages typed by the model, {len(meta['writers'])} writers; "
            f"{meta['cv_scheme']} cross-validated message type {meta['cv_type_accuracy']:.1%} "
            f"(the rules alone: {meta['rules_type_accuracy']:.1%}). Training rows above are in-sample."
        )
    both = _merge(blind)
    _print_classes(console, both, "Blind sets together")
    if show_errors:
        _print_errors(console, both)
    # Message and sender type on each blind set and on both; the recall floor per type on both together:
    # a type has 12-24 messages in one set, where one message moves its recall by 4-8 points.
    results = [(name, _meets(ev, recall_floor=False)) for name, ev in zip(BLIND_SETS, blind, strict=True)]
    results.append(("both blind sets", _meets(both)))
    short = [f"{name}: {s}" for name, (_, shorts) in results for s in shorts]
    return _verdict(console, (not short, short))


# ---------------------------------------------------------------------------------------------------
# worktool train


def cli_train(corpus: Path | None = None, out: Path | None = None) -> int:
    """Fit the model on the corpus, print its cross-validated accuracy, write it (default: the builtin)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from classifiers.training import CORPUS_DIR, TrainingError, train

    console = Console()
    out = out or BUILTIN_MODEL
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("reading the corpus", total=None)

        def report(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        try:
            result = train(corpus or CORPUS_DIR, progress=report)
        except TrainingError as e:
            console.print(str(e), style="red", markup=False)
            return 2
    meta = result.model.meta
    table = Table(title=f"{meta['cv_scheme']} cross-validation on {meta['examples']} messages")
    table.add_column("C", justify="right")
    table.add_column("message type", justify="right")
    for c, acc in result.cv_by_c.items():
        table.add_row(f"{c:g}" + (" (chosen)" if c == result.chosen_c else ""), f"{acc:.1%}")
    console.print(table)
    expected = [e.label for e in result.corpus.examples]
    recall = Table(title="Cross-validated recall per type (rules alone beside it)")
    for col in ("type", "messages", "model", "rules"):
        recall.add_column(col, justify="left" if col == "type" else "right")
    for label in sorted(set(expected)):
        idx = [i for i, e in enumerate(expected) if e == label]
        model_ok = sum(result.cv_predictions[i] == label for i in idx)
        rules_ok = sum(result.corpus.rule_predictions[i] == label for i in idx)
        recall.add_row(label, str(len(idx)), f"{model_ok / len(idx):.0%}", f"{rules_ok / len(idx):.0%}")
    console.print(recall)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(out)
    console.print(
        f"Model written to {out} ({out.stat().st_size // 1024} KiB, {len(result.model.vocabulary)} features); "
        f"{len(result.corpus.structural)} messages left to the rules by structure, "
        f"{result.corpus.sender_errors} sender-type mismatches."
    )
    return 0
