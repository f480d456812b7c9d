"""The trained message-type model: a linear model over a message's characters, words and structure
(docs/rules.md §2 "Rules and the trained model"). Pure and deterministic: the same message gives the
same type and probability on every run, so replays stay identical.

The rules' own reading (their type, flags and keyword hits) was tried as features and left out by
measurement: leave-one-writer-out accuracy 90.1-90.3 % with it, 90.4-90.6 % without (5,502 messages).

One vocabulary of feature strings and one weight matrix whose columns are the 14 message types; each
sender family (user, staff and assistants, operator) is its own multinomial logistic regression over its
own columns (trained separately by classifiers/training.py), so a softmax over a family's columns is
exactly that family's model. A message's features are binary; the vector is L2-normalised (each present
feature weighs 1/sqrt(n)), as in training.

Words come from rjieba (jieba-rs): 3 µs a message and 0.2 s to load its dictionary, where jieba's Python
segmenter took 170 µs and 4 s (measured; benchmarks/README.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1  # of the .npz file; a model of another format is refused at load

# The message types of each sender family, in the order of the model's columns.
FAMILY_TYPES: dict[str, tuple[str, ...]] = {
    "user": (
        "chat_after_sales",
        "chat_complaint",
        "chat_private_operation",
        "chat_cooperation",
        "chat_complain_discuss",
        "chat_daily",
        "chat_other",
    ),
    "staff": ("staff_at_user", "staff_reply_user", "staff_ask_user", "staff_other"),
    "operator": ("operator_tone_hard", "operator_assign_user", "operator_other"),
}
SENDER_FAMILY = {"user": "user", "staff": "staff", "assistant": "staff", "operator": "operator"}
LABELS: tuple[str, ...] = tuple(t for types in FAMILY_TYPES.values() for t in types)

_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"[\s\x00-\x1f\x7f]+")  # the start and end marks \x02 \x03 never in a text
_LENGTH_BUCKETS = (1, 3, 6, 12, 25, 50, 100)
# The model reads a message's beginning only: its cost stays bounded whatever the text (the corpus's
# longest message has 121 characters; what a 2 MB body is about shows in its first thousand).
MAX_CHARS = 1000


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What the model reads of one message: its text as the rules read it (normalised, @-mentions
    removed, staff commands removed) and the structure around it."""

    text: str
    family: str  # user | staff | operator
    owner_mentioned: bool = False  # an @ of an owner (for staff and operators)
    any_mention: bool = False
    at_me: bool = False
    room_type: int = 1


def _length_bucket(n: int) -> int:
    for i, edge in enumerate(_LENGTH_BUCKETS):
        if n <= edge:
            return i
    return len(_LENGTH_BUCKETS)


def clean_text(text: str) -> str:
    """The first MAX_CHARS characters, digit runs folded to "0", control characters and runs of spaces
    to one space."""
    return _SPACES.sub(" ", _DIGITS.sub("0", text[:MAX_CHARS])).strip()


def structure_features(x: ModelInput, text: str) -> list[str]:
    """What the model reads besides characters and words: the sender family, the mentions, the room and
    the shape of the text."""
    out = [f"fam:{x.family}", f"len:{_length_bucket(len(text))}", f"room:{x.room_type}"]
    if x.owner_mentioned:
        out.append("at:owner")
    if x.any_mention:
        out.append("at:any")
    if x.at_me:
        out.append("at:me")
    bangs = text.count("!")
    if bangs:
        out.append(f"bang:{min(bangs, 3)}")
    if text.endswith("?"):
        out.append("ends:?")
    return out


def features(x: ModelInput, segment: Callable[[str], Iterable[str]]) -> list[str]:
    """The feature strings of one message, without duplicates, in a fixed order: structure, "c:" character
    1-3 grams of the text between start and end marks, "w:" words. Training reads these; inference
    (`TypeModel.indices`) finds the same features without building the strings."""
    text = clean_text(x.text)
    out = structure_features(x, text)
    padded = f"\x02{text}\x03"
    for n in (1, 2, 3):
        out += ["c:" + padded[i : i + n] for i in range(len(padded) - n + 1)]
    out += ["w:" + w for w in words_of(segment, text) if w.strip()]
    return list(dict.fromkeys(out))


def ngram_code(gram: str) -> int:
    """A character 1-, 2- or 3-gram as one integer, its code points 21 bits each. No code point is 0
    (clean_text turns control characters into spaces), so the three lengths fall in disjoint ranges and
    no two n-grams share a code."""
    code = 0
    for ch in gram:
        code = (code << 21) | ord(ch)
    return code


def ngram_codes(padded: str) -> np.ndarray:
    """`ngram_code` of every 1-, 2- and 3-gram of the text, vectorised."""
    cp = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    return np.concatenate((cp, (cp[:-1] << 21) | cp[1:], (cp[:-2] << 42) | (cp[1:-1] << 21) | cp[2:]))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique for a few hundred integers, at half its cost (no inverse, no counts)."""
    a.sort()
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def words_of(segment: Callable[[str], Iterable[str]], text: str) -> Iterable[str]:
    """The segmenter's words; a lone surrogate (which orjson refuses, but a Python caller can pass) is
    read as "?" instead of failing the message."""
    try:
        return segment(text)
    except UnicodeEncodeError:
        return segment(text.encode("utf-8", "replace").decode("utf-8"))


def default_segmenter() -> Callable[[str], list[str]]:
    import rjieba  # loads its dictionary (~0.2 s): only when a model is used

    return rjieba.cut


class ModelFileError(ValueError):
    """The model file is missing, unreadable or of another format."""


class TypeModel:
    """Inference only; training is classifiers/training.py."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        weights: np.ndarray,
        bias: np.ndarray,
        labels: Sequence[str],
        meta: dict[str, Any] | None = None,
        segment: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        if weights.shape != (len(vocabulary), len(labels)) or bias.shape != (len(labels),):
            raise ModelFileError(
                f"weights {weights.shape} and bias {bias.shape} do not fit "
                f"{len(vocabulary)} features x {len(labels)} labels"
            )
        self.vocabulary = list(vocabulary)
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)
        self.labels = tuple(labels)
        self.meta = meta or {}
        self.segment = segment or default_segmenter()
        column = {label: i for i, label in enumerate(self.labels)}
        self._columns = {family: [column[t] for t in types] for family, types in FAMILY_TYPES.items()}
        self._span = len(self.vocabulary) + 1  # key = message number * span + vocabulary index
        # Character n-grams as integers (ngram_code) in a sorted array: a message's n-grams are found
        # with one searchsorted instead of a dict lookup each (measured: 27 -> 12 us for a short message);
        # words and structure by name.
        chars = sorted((ngram_code(f[2:]), i) for i, f in enumerate(self.vocabulary) if f.startswith("c:"))
        # a last entry above every code: searchsorted never runs off the end, no bounds check needed
        self._char_codes = np.array([c for c, _ in chars] + [2**64 - 1], dtype=np.uint64)
        self._char_rows = np.array([i for _, i in chars] + [-1], dtype=np.int64)
        self._words = {f[2:]: i for i, f in enumerate(self.vocabulary) if f.startswith("w:")}
        self._other = {f: i for i, f in enumerate(self.vocabulary) if not f.startswith(("c:", "w:"))}

    def features(self, x: ModelInput) -> list[str]:
        return features(x, self.segment)

    def _named(self, x: ModelInput, text: str) -> list[int]:
        """The vocabulary indices of the message's structure features and words."""
        other, words = self._other.get, self._words.get
        named = [i for f in structure_features(x, text) if (i := other(f)) is not None]
        return named + [i for w in words_of(self.segment, text) if (i := words(w)) is not None]

    def _char_hits(self, padded: str) -> tuple[np.ndarray, np.ndarray]:
        """(which n-grams of the text are in the vocabulary, their vocabulary indices)."""
        codes = ngram_codes(padded)
        table = self._char_codes
        pos = np.searchsorted(table, codes)
        hit = table[pos] == codes
        return hit, self._char_rows[pos[hit]]

    def found(self, xs: Sequence[ModelInput]) -> tuple[np.ndarray, np.ndarray]:
        """(message number, vocabulary index) of every feature of each message, sorted and unique: the
        features of `features(x)` found without building their strings (tests/operators/
        test_type_model.py checks that both agree), for a whole batch at once, so numpy's per-call cost
        is paid once a batch instead of once a message."""
        texts = [clean_text(x.text) for x in xs]
        named: list[int] = []
        for k, (x, text) in enumerate(zip(xs, texts, strict=True)):
            named += [k * self._span + i for i in self._named(x, text)]
        # One string for the batch: an n-gram across two messages holds "\x03\x02", which clean_text
        # keeps out of every text, so none is in the vocabulary.
        hit, rows = self._char_hits("".join(f"\x02{t}\x03" for t in texts))
        at = np.repeat(np.arange(len(xs), dtype=np.int64), [len(t) + 2 for t in texts])
        owner = np.concatenate((at, at[:-1], at[:-2]))  # the message of each n-gram, by its first char
        keys = _sorted_unique(np.concatenate((owner[hit] * self._span + rows, named)))
        owners = keys // self._span
        return owners, keys - owners * self._span

    def indices(self, x: ModelInput) -> np.ndarray:
        """The vocabulary indices of one message's features, sorted and unique: `found` for a batch of
        one, without the bookkeeping of which message a feature belongs to (the dataflow classifies one
        message at a time when a step budget guards each record)."""
        text = clean_text(x.text)
        _, rows = self._char_hits(f"\x02{text}\x03")
        return _sorted_unique(np.concatenate((rows, np.array(self._named(x, text), dtype=np.int64))))

    def _scores(self, xs: Sequence[ModelInput]) -> list[list[float]]:
        """Each message's scores over its family's types: bias + (sum of its features' weights, in index
        order) / sqrt(their number), the same arithmetic for a batch of one and a batch of many."""
        if len(xs) == 1:
            rows = self.indices(xs[0])
            present, starts, counts = np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([len(rows)])
        else:
            owners, rows = self.found(xs)
            starts = (
                np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1]))) if len(owners) else owners
            )
            present, counts = owners[starts], np.diff(np.append(starts, len(owners)))
        scores = np.tile(self.bias, (len(xs), 1))
        if len(rows):
            sums = np.add.reduceat(self.weights.take(rows, axis=0), starts, axis=0)
            scores[present] += sums * (1.0 / np.sqrt(counts))[:, None]
        out = scores.tolist()
        return [[row[c] for c in self._columns[x.family]] for row, x in zip(out, xs, strict=True)]

    def probabilities(self, x: ModelInput) -> dict[str, float]:
        """The family's types with their probabilities."""
        [scores] = self._scores([x])
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return {t: e / total for t, e in zip(FAMILY_TYPES[x.family], exps, strict=True)}

    def predict_batch(self, xs: Sequence[ModelInput]) -> list[tuple[str, float]]:
        """For each message the most probable type of its family and its probability. A message's answer
        depends on that message alone, never on the others of the batch (its sum runs over its own
        features in their order); ties go to the earlier type of the family's order above."""
        if not xs:
            return []
        out = []
        for scores, x in zip(self._scores(xs), xs, strict=True):
            top = max(scores)
            out.append(
                (FAMILY_TYPES[x.family][scores.index(top)], 1.0 / sum(math.exp(s - top) for s in scores))
            )
        return out

    def predict(self, x: ModelInput) -> tuple[str, float]:
        return self.predict_batch([x])[0]

    # ----------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:  # a file object: numpy would append ".npz" to a path without it
            self._write(f)
        tmp.replace(path)  # readers never see half a model

    def _write(self, f: Any) -> None:
        import json

        np.savez_compressed(
            f,
            format=np.array(FORMAT),
            vocabulary=np.array(self.vocabulary, dtype=str),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            labels=np.array(self.labels, dtype=str),
            meta=np.array(json.dumps(self.meta, ensure_ascii=False, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: Path, segment: Callable[[str], Iterable[str]] | None = None) -> TypeModel:
        import json
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt != FORMAT:
                    raise ModelFileError(f"{path}: model format {fmt}, this version reads {FORMAT}")
                return cls(
                    z["vocabulary"].tolist(),
                    z["weights"],
                    z["bias"],
                    z["labels"].tolist(),
                    json.loads(str(z["meta"])),
                    segment,
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{path}: not a message-type model ({e})") from e
