"""Labelled message sets (tests/data/*_messages.jsonl with their rosters; docs/labelling.md): reading
them as Messages and scoring a classifier on them. Used by `worktool accuracy` and `worktool train`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from operators.classify import Classifier
from operators.parse import parse_mentions
from worktool.models import TEXT_TYPES, Classification, Message

ROSTER_NAME = "labelled_roster.yaml"  # looked up next to the dataset


def roster_for(dataset: Path) -> Path:
    """`x_messages.jsonl` uses `x_roster.yaml` beside it when present, else `labelled_roster.yaml`."""
    own = dataset.with_name(dataset.stem.removesuffix("_messages") + "_roster.yaml")
    return own if own.is_file() else dataset.parent / ROSTER_NAME


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


def per_class(pairs: list[tuple[str, str]]) -> Iterator[tuple[str, int, float, float]]:
    expected = Counter(e for e, _ in pairs)
    predicted = Counter(p for _, p in pairs)
    correct = Counter(e for e, p in pairs if e == p)
    for label in sorted(set(expected) | set(predicted)):
        precision = correct[label] / predicted[label] if predicted[label] else 0.0
        recall = correct[label] / expected[label] if expected[label] else 0.0
        yield label, expected[label], precision, recall
