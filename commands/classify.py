"""`worktool classify` (raw records in, one classification per line out) and `worktool accuracy`
(the rule classifier against the labelled set)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from classifiers import build_classifier, close_classifier
from operators.classify import Classifier, RuleClassifier, classification_fields
from operators.parse import parse_mentions, parse_message
from worktool.config import BusinessConfig, ConfigError, load_config
from worktool.models import TEXT_TYPES, Classification, Message, RawRecord
from worktool.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO_ROOT / "tests" / "data" / "labelled_messages.jsonl"
ROSTER_NAME = "labelled_roster.yaml"  # looked up next to the dataset


def roster_for(dataset: Path) -> Path:
    """`x_messages.jsonl` uses `x_roster.yaml` beside it when present, else `labelled_roster.yaml`."""
    own = dataset.with_name(dataset.stem.removesuffix("_messages") + "_roster.yaml")
    return own if own.is_file() else dataset.parent / ROSTER_NAME


MESSAGE_TYPE_TARGET = 0.95
SENDER_TYPE_TARGET = 0.99
_BATCH = 64  # records classified together (lets an LLM classifier work concurrently)


# ---------------------------------------------------------------------------------------------
# worktool classify


def cli_classify(stdin: BinaryIO | None = None, stdout: Any = None) -> int:
    """Raw records (JSONL) on stdin -> one JSON line per record on stdout. Records that are not messages
    or are malformed give a line with "error". Exit 1 only when stdin cannot be read."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    settings = get_settings()
    try:
        config = load_config(settings.config_path)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    classifier = build_classifier(settings, config)
    try:
        pending: list[tuple[int, Message]] = []
        results: list[dict[str, Any]] = []
        try:
            for lineno, raw in enumerate(stdin, start=1):
                if not raw.strip():
                    continue
                parsed = _parse_line(raw)
                if isinstance(parsed, Message):
                    pending.append((len(results), parsed))
                    results.append({})
                else:
                    results.append({"line": lineno, "error": parsed})
                if len(pending) >= _BATCH:
                    _flush(classifier, pending, results, stdout)
                    pending, results = [], []
        except OSError as e:
            _flush(classifier, pending, results, stdout)
            print(f"cannot read stdin: {e}", file=sys.stderr)
            return 1
        _flush(classifier, pending, results, stdout)
        return 0
    finally:
        close_classifier(classifier)


def _parse_line(raw: bytes) -> Message | str:
    """The Message of one JSONL line, or why there is none."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return f"not JSON: {e}"
    try:
        record = RawRecord.model_validate(data)
    except ValidationError as e:
        return "not a raw record: " + _first_error(e)
    if record.kind != "message":
        return f"not a message record (kind={record.kind})"
    try:
        return parse_message(record)[1]
    except ValidationError as e:
        return "malformed message body: " + _first_error(e)
    except ValueError as e:
        return f"malformed message body: {e}"


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def _flush(
    classifier: Classifier, pending: list[tuple[int, Message]], results: list[dict[str, Any]], out: Any
) -> None:
    if pending:
        for (slot, m), c in zip(pending, classifier.classify_batch([m for _, m in pending]), strict=True):
            results[slot] = classification_fields(m.message_id, c)
    for row in results:
        out.write(orjson.dumps(row) + b"\n")
    out.flush()


# ---------------------------------------------------------------------------------------------
# Labelled set


_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def labelled_message(row: dict[str, Any], index: int = 0) -> Message:
    """A Message from one labelled line ({text, raw_text?, sender_name, room_type, text_type, at_me})."""
    text = row.get("text", "")
    raw_text = row.get("raw_text") or text
    room_type = int(row.get("room_type", 1))
    text_type = int(row.get("text_type", 1))
    is_group = room_type in (1, 3)
    return Message(
        message_id=f"labelled-{index}",
        session_id="group:labelled" if is_group else f"private:labelled:{row['sender_name']}",
        robot_id="labelled",
        received_at=_EPOCH,
        room_type=room_type,
        is_group=is_group,
        group_name="labelled" if is_group else "",
        group_remark="",
        sender_name=row["sender_name"],
        text=text,
        raw_text=raw_text,
        text_type=text_type,
        content_kind=TEXT_TYPES.get(text_type, "unknown"),
        at_me=bool(row.get("at_me", False)),
        mentions=parse_mentions(raw_text),
        reply_target="labelled" if is_group else row["sender_name"],
    )


def load_labelled(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@dataclass
class Scores:
    n: int = 0
    type_ok: int = 0
    sender_ok: int = 0

    @property
    def type_accuracy(self) -> float:
        return self.type_ok / self.n if self.n else 0.0

    @property
    def sender_accuracy(self) -> float:
        return self.sender_ok / self.n if self.n else 0.0


@dataclass
class Evaluation:
    overall: Scores = field(default_factory=Scores)
    by_split: dict[str, Scores] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (expected, predicted) message types
    errors: list[tuple[dict[str, Any], Classification]] = field(default_factory=list)


def _label(code: str | None) -> str:
    return code or "(robot: none)"


def evaluate(rows: Iterable[dict[str, Any]], classifier: Classifier) -> Evaluation:
    rows = list(rows)
    results = classifier.classify_batch([labelled_message(r, i) for i, r in enumerate(rows)])
    ev = Evaluation()
    for row, c in zip(rows, results, strict=True):
        type_ok = c.message_type == row["expected_message_type"]
        sender_ok = c.sender_type == row["expected_sender_type"]
        for s in (ev.overall, ev.by_split.setdefault(row.get("split", "tuning"), Scores())):
            s.n += 1
            s.type_ok += type_ok
            s.sender_ok += sender_ok
        ev.pairs.append((_label(row["expected_message_type"]), _label(c.message_type)))
        if not (type_ok and sender_ok):
            ev.errors.append((row, c))
    return ev


def _per_class(pairs: list[tuple[str, str]]) -> Iterator[tuple[str, int, float, float]]:
    expected = Counter(e for e, _ in pairs)
    predicted = Counter(p for _, p in pairs)
    correct = Counter(e for e, p in pairs if e == p)
    for label in sorted(set(expected) | set(predicted)):
        precision = correct[label] / predicted[label] if predicted[label] else 0.0
        recall = correct[label] / expected[label] if expected[label] else 0.0
        yield label, expected[label], precision, recall


def cli_accuracy(dataset: Path | None = None, roster: Path | None = None, show_errors: bool = False) -> int:
    """Print message-type and sender-type accuracy, per-class precision/recall and the confusion matrix
    of the rule classifier; exit 1 below the targets (message type 95 %, sender type 99 %)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dataset = dataset or DEFAULT_DATASET
    if not dataset.is_file():
        console.print(f"[red]labelled set not found: {dataset}[/red]")
        return 2
    roster = roster or roster_for(dataset)
    try:
        config: BusinessConfig = load_config(roster if roster.is_file() else get_settings().config_path)
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    ev = evaluate(load_labelled(dataset), RuleClassifier(config))

    summary = Table(title=f"Rule classifier on {dataset.name}")
    for col in ("split", "messages", "message type", "sender type"):
        summary.add_column(col, justify="right" if col != "split" else "left")
    for name, s in [("all", ev.overall), *sorted(ev.by_split.items())]:
        summary.add_row(name, str(s.n), f"{s.type_accuracy:.1%}", f"{s.sender_accuracy:.1%}")
    console.print(summary)

    per_class = Table(title="Message type: per class")
    for col in ("type", "support", "precision", "recall"):
        per_class.add_column(col, justify="left" if col == "type" else "right")
    for label, support, precision, recall in _per_class(ev.pairs):
        per_class.add_row(label, str(support), f"{precision:.0%}", f"{recall:.0%}")
    console.print(per_class)

    labels = sorted({e for e, _ in ev.pairs} | {p for _, p in ev.pairs})
    counts = Counter(ev.pairs)
    matrix = Table(title="Confusion matrix (rows expected, columns predicted; columns numbered as rows)")
    matrix.add_column("expected")
    for i in range(len(labels)):
        matrix.add_column(str(i + 1), justify="right")
    for i, e in enumerate(labels):
        matrix.add_row(f"{i + 1} {e}", *[str(counts[(e, p)] or "") for p in labels])
    console.print(matrix)

    if show_errors:
        for row, c in ev.errors:
            console.print(
                f"{row['expected_sender_type']}/{row['expected_message_type']} -> "
                f"{c.sender_type}/{c.message_type}  {row['text']!r}  [{c.reason}]",
                markup=False,
            )

    ok = ev.overall.type_accuracy >= MESSAGE_TYPE_TARGET and ev.overall.sender_accuracy >= SENDER_TYPE_TARGET
    verdict = "meets" if ok else "is below"
    console.print(
        f"Accuracy {verdict} the targets (message type >= {MESSAGE_TYPE_TARGET:.0%}, "
        f"sender type >= {SENDER_TYPE_TARGET:.0%})."
    )
    return 0 if ok else 1
