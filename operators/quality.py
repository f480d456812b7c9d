"""Staff reply quality (docs/rules.md §3, situation 2): which staff message answers which owner's question,
and the rule fallback of its score. Pure.

An owner's question is a user text the classification says wants an answer (`need_reply`). Each owner of
a session keeps one open question (their unanswered texts, joined, the latest time); a staff or assistant
message within `intervention.reply_window_minutes` of it answers it:

    staff message @-ing owners  -> the latest open question of the owners it @-s (none of them has one:
                                   it is addressed to someone else, it answers nothing)
    staff message without an @  -> the latest open question of the session

and closes it. The LLM scores that answer given the question when one is configured (classifiers/llm, the
score travels on the Classification); otherwise `ReplyScorer` does, by the structure of the reply:

    nothing but @mentions, punctuation or emoji          -> 0
    only acknowledgements and fillers ("嗯", "好的", "收到") -> at most short_score
    base 0.35, + up to 0.25 for length (40 letters or digits), + up to 0.25 for the words it shares with
    the question (character bigrams), + 0.1 per helpful cue (agency, steps, action, time, explanation,
    courtesy), - 0.35 for the first dismissive shape (redirect, self_help, not_mine, helpless, pushback,
    a configured brush-off) and 0.175 for each further one (halved when the speaker commits to act),
    - 0.1 for a reply much shorter than the question
    a dismissive shape and no helpful cue                -> at most dismissive_score
    fewer than short_reply_chars letters or digits and under two helpful cues -> at most short_score

Everything here is linear in the text: a few passes over its characters and RE2 patterns
(worktool/linear_regex.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from worktool.config import InterventionConfig
from worktool.linear_regex import LinearRegex

QualitySource = Literal["rules", "llm"]

MAX_ASKS = 8  # open questions kept per session (the oldest dropped beyond)
ASK_CHARS = 240  # of an owner's open question(s), the latest characters kept

DISMISSIVE = ("redirect", "self_help", "not_mine", "helpless", "pushback")
HELPFUL = ("agency", "steps", "action", "time", "explanation", "courtesy")

# What an acknowledgement or a filler is made of: a reply of only these characters answers nothing.
_FILLER_CHARS = frozenset("嗯恩哦噢喔好的啊呀吧哈呵额呃唔昂嗷啦咯呢么嘛嘞滴哒行对是收到知道了解明白可以okOK1")
# Characters that carry no content of a question: their bigrams do not count as shared words.
_FUNCTION_CHARS = frozenset("的了吗呢吧啊呀我你您是在有么什怎这那个一不就也都还要会能可以和与他她它们吗嘛么")

_BASE = 0.35
_LENGTH_WEIGHT, _LENGTH_FULL = 0.25, 40
_OVERLAP_WEIGHT, _OVERLAP_FULL = 0.25, 4
_HELPFUL_WEIGHT = 0.1
_DISMISSIVE_WEIGHT = 0.35
_SHORTER_THAN_QUESTION = 0.1
_KEPT = 1024  # replies (and questions) whose reading is kept, by text

# A reply's reading: its content (letters and digits), its dismissive and helpful cues, its word pairs.
_Reading = tuple[str, tuple[str, ...], tuple[str, ...], frozenset[str]]


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    score: float
    source: QualitySource
    reason: str | None  # the rules' reading; None for the LLM's score


# -- which message answers which question ------------------------------------------------------------

Ask = tuple[datetime, str]  # (when the owner last asked, what: their open question's text)


def note_ask(asks: dict[str, Ask], user: str, text: str, at: datetime, window: timedelta) -> None:
    """The owner `user` asked `text` at `at`: it joins their open question (or starts one)."""
    previous = asks.pop(user, None)
    if previous is not None and timedelta(0) <= at - previous[0] <= window:
        text = f"{previous[1]}\n{text}"
    asks[user] = (at, text[-ASK_CHARS:])  # insertion order: the latest last
    for who in [u for u, (t, _) in asks.items() if at - t > window]:
        del asks[who]
    while len(asks) > MAX_ASKS:
        del asks[next(iter(asks))]


def take_ask(
    asks: dict[str, Ask], mentions: Sequence[str], at: datetime, window: timedelta
) -> tuple[str, Ask] | None:
    """The open question a staff message at `at` answers (closed here), or None."""
    if not asks:
        return None
    for who in [u for u, (t, _) in asks.items() if at - t > window]:
        del asks[who]
    # @-ing owners: their questions only; none of them has one: addressed to someone else
    candidates = [u for u in dict.fromkeys(mentions) if u in asks] if mentions else list(asks)
    if not candidates:
        return None
    user = max(candidates, key=lambda u: asks[u][0])
    return user, asks.pop(user)


# -- the rule score ----------------------------------------------------------------------------------


def strip_mentions(text: str) -> str:
    """The text without its "@name" runs (an @ and what follows up to a space or another @, as
    operators/parse.py reads mentions)."""
    if "@" not in text:
        return text
    out: list[str] = []
    in_mention = False
    for ch in text:
        if ch == "@":
            in_mention = True
        elif in_mention and (ch.isspace() or ch == "\u2005"):
            in_mention = False
            out.append(" ")
        elif not in_mention:
            out.append(ch)
    return "".join(out)


def content_of(text: str) -> str:
    """Letters and digits only (no spaces, punctuation, emoji), lower-cased."""
    return "".join(ch for ch in text if ch.isalnum()).lower()


def _bigrams(content: str) -> frozenset[str]:
    return frozenset(
        content[i : i + 2]
        for i in range(len(content) - 1)
        if not (content[i] in _FUNCTION_CHARS and content[i + 1] in _FUNCTION_CHARS)
    )


def _one_pattern(patterns: Sequence[str]) -> LinearRegex | None:
    return LinearRegex("|".join(f"(?:{p})" for p in patterns)) if patterns else None


class ReplyScorer:
    """The rule fallback of the reply-quality score, in [0, 1] (module docstring)."""

    def __init__(self, config: InterventionConfig) -> None:
        self.c = config
        cues = config.quality_cues
        self.cues: list[tuple[str, LinearRegex]] = [
            (name, rx)
            for name in (*DISMISSIVE, *HELPFUL)
            if (rx := _one_pattern(cues.get(name, []))) is not None
        ]
        self.brush_offs = [w.lower() for w in config.dismissive_words if w]
        self._readings: dict[str, _Reading | QualityVerdict] = {}
        self._questions: dict[str, tuple[str, frozenset[str]]] = {}

    def score(self, text: str, question: str = "") -> QualityVerdict:
        c = self.c
        reading = self._reading(text)
        if isinstance(reading, QualityVerdict):
            return reading
        content, dismissive, helpful, replied = reading
        question_content, asked = self._question(question)
        shared = len(asked & replied) if asked else 0
        overlap = min(shared / min(len(asked), _OVERLAP_FULL), 1.0) if asked else 0.0

        score = _BASE + _LENGTH_WEIGHT * min(len(content), _LENGTH_FULL) / _LENGTH_FULL
        score += _OVERLAP_WEIGHT * overlap + _HELPFUL_WEIGHT * len(helpful)
        if dismissive:
            penalty = _DISMISSIVE_WEIGHT * (1 + 0.5 * (len(dismissive) - 1))
            score -= penalty / 2 if "agency" in helpful else penalty
        if question_content and len(content) * 4 < len(question_content) and len(content) < 8:
            score -= _SHORTER_THAN_QUESTION
        if dismissive and not helpful and not shared:
            score = min(score, c.dismissive_score)
        if len(content) < c.short_reply_chars and len(helpful) < 2:
            score = min(score, c.short_score)
        score = round(min(max(score, 0.0), 1.0), 4)
        parts = [f"{len(content)} chars"]
        if dismissive:
            parts.append("dismissive: " + ", ".join(dismissive))
        if helpful:
            parts.append("helpful: " + ", ".join(helpful))
        if asked:
            parts.append(f"shares {shared} of the question's {len(asked)} word pairs")
        return QualityVerdict(score, "rules", "; ".join(parts))

    def _reading(self, text: str) -> _Reading | QualityVerdict:
        """What the score reads of the reply alone (a verdict already for an empty or filler one). Kept
        by text: staff send the same few replies over and over, and the cues are most of the cost."""
        reading = self._readings.get(text)
        if reading is None:
            reading = self._read(text)
            if len(self._readings) >= _KEPT:
                self._readings.clear()
            self._readings[text] = reading
        return reading

    def _read(self, text: str) -> _Reading | QualityVerdict:
        content = content_of(strip_mentions(text))
        if not content:
            return QualityVerdict(0.0, "rules", "nothing but @mentions, punctuation or emoji")
        if all(ch in _FILLER_CHARS for ch in content):
            return QualityVerdict(min(self.c.short_score, 0.15), "rules", "only an acknowledgement")
        # The cues read the words with their punctuation (a question mark ends a rhetorical question),
        # without the mentions and spaces.
        words = "".join(strip_mentions(text).split()).lower()
        found = [name for name, rx in self.cues if rx.matches(words)]
        if any(w in words for w in self.brush_offs):
            found.append("brush_off")
        dismissive = tuple(f for f in found if f in DISMISSIVE or f == "brush_off")
        helpful = tuple(f for f in found if f in HELPFUL)
        return content, dismissive, helpful, _bigrams(content)

    def _question(self, question: str) -> tuple[str, frozenset[str]]:
        """The question's content and its word pairs, kept by text like `_reading`."""
        read = self._questions.get(question)
        if read is None:
            content = content_of(strip_mentions(question))
            read = (content, _bigrams(content))
            if len(self._questions) >= _KEPT:
                self._questions.clear()
            self._questions[question] = read
        return read

    def is_low(self, verdict: QualityVerdict) -> bool:
        return verdict.score < self.c.staff_low_quality
