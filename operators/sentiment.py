"""Per-message sentiment (rules) and rolling per-user satisfaction. Pure: the clock is the event time
passed in, the state is a plain picklable dataclass the dataflow keeps.

Sentiment of one message, in (-1, 1):
    P, N = summed weights of the distinct positive and negative words found, each multiplied by an intensifier
           right before it (太, 非常); a negated positive word counts negative ("不满意"), a negated
           negative word counts `negated_negative_factor` positive ("不用担心");
    when N > P, each "!" beyond the first adds `exclamation_boost` to N;
    sentiment = (P - N) / (P + N + 1)        one strong word gives about ±0.5-0.7, none gives 0.

Satisfaction of one user, in [0, 1], starting at `initial` (0.5), updated per message by an
exponential moving average towards the message's target:
    clear sentiment (|s| >= neutral_band):  score += alpha * ((s + 1) / 2 - score)
    a chat_complaint:                       score += complaint_alpha * (complaint_target - score)
                                            (instead of the above, when that would go lower)
    neutral message:                        score += neutral_decay * (initial - score)
So two or three clearly negative messages, or one complaint, take a fresh user below `low` (0.3);
recovering above `high` (0.7) takes about four clearly positive ones. Users idle longer than
`idle_days` (event time) are evicted on a sweep at most every `sweep_interval_s`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.rules import Hit, Negation, TermMatcher, normalize_text
from worktool.config import ClassifierConfig, SatisfactionConfig

POSITIVE, NEGATIVE, INTENSIFIER, NEUTRAL = "sentiment+", "sentiment-", "sentiment*", "sentiment0"
_LABELS = frozenset({POSITIVE, NEGATIVE, INTENSIFIER, NEUTRAL})


class SentimentScorer:
    """`score(text)` scans on its own; `score_hits(text, hits)` reads the hits of a scan that included
    `keywords` (the classifier scans once for its rules and this lexicon)."""

    def __init__(self, config: ClassifierConfig) -> None:
        s = config.sentiment
        self._config = s
        self.keywords: dict[str, dict[str, float]] = {
            POSITIVE: s.positive,
            NEGATIVE: s.negative,
            INTENSIFIER: s.intensifiers,
            NEUTRAL: dict.fromkeys(s.neutral, 1.0),
        }
        self._matcher = TermMatcher(self.keywords)
        self._negation = Negation(config.negators, config.negation_exceptions, config.negation_window)

    def score(self, text: str) -> float:
        text = normalize_text(text)
        return self.score_hits(text, self._matcher.scan(text)) if text else 0.0

    def score_hits(self, text: str, hits: Iterable[Hit]) -> float:
        """Sentiment from the lexicon hits in the normalised `text` (other labels are ignored)."""
        s = self._config
        hits = [h for h in hits if h.label in _LABELS]
        if not hits:
            return 0.0
        boost = {h.end: h.weight for h in hits if h.label == INTENSIFIER}
        pos = neg = 0.0
        seen: set[tuple[str, str]] = set()
        for h in hits:
            if h.label in (INTENSIFIER, NEUTRAL) or (h.label, h.term) in seen:
                continue  # a repeated word ("哈哈哈哈") counts once
            seen.add((h.label, h.term))
            weight = h.weight * boost.get(h.start, 1.0)
            negated = not self._negation.starts_negated(h.term) and self._negation.before(text, h.start)
            if h.label == POSITIVE:
                if negated:
                    neg += weight
                else:
                    pos += weight
            elif negated:
                pos += weight * s.negated_negative_factor
            else:
                neg += weight
        if neg > pos:
            neg += s.exclamation_boost * max(0, text.count("!") - 1)
        return round((pos - neg) / (pos + neg + 1.0), 3)


@dataclass(slots=True)
class UserSatisfaction:
    score: float
    last_at: datetime
    messages: int = 0


@dataclass
class SatisfactionState:
    """What the dataflow keeps (per session shard, per user key): picklable, bounded by eviction."""

    users: dict[str, UserSatisfaction] = field(default_factory=dict)
    swept_at: datetime | None = None
    # Users changed (or evicted) since a snapshot by key drained it (operators/sessions.py); None: not tracked.
    touched: set[str] | None = field(default=None, compare=False, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "users": [(k, u.score, u.last_at, u.messages) for k, u in self.users.items()],
            "swept_at": self.swept_at,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> SatisfactionState:
        users = {
            k: UserSatisfaction(score, last_at, messages) for k, score, last_at, messages in data["users"]
        }
        return cls(users, data["swept_at"])


class SatisfactionTracker:
    """The policy; holds only configuration, so one instance serves every state."""

    def __init__(self, config: SatisfactionConfig) -> None:
        self.c = config
        self._idle = timedelta(days=config.idle_days)
        self._sweep_every = timedelta(seconds=config.sweep_interval_s)

    def score(self, state: SatisfactionState, user: str) -> float:
        u = state.users.get(user)
        return self.c.initial if u is None else u.score

    def observe(
        self, state: SatisfactionState, user: str, sentiment: float, at: datetime, *, complaint: bool = False
    ) -> float:
        """Fold one message of `user` at event time `at` into the state; returns the new score."""
        c = self.c
        u = state.users.get(user)
        if u is None:
            u = state.users[user] = UserSatisfaction(c.initial, at)
        if state.touched is not None:
            state.touched.add(user)
        score = u.score
        if abs(sentiment) >= c.neutral_band:
            new = score + c.alpha * ((sentiment + 1.0) / 2.0 - score)
        else:
            new = score + c.neutral_decay * (c.initial - score)
        if complaint:
            new = min(new, score + c.complaint_alpha * (c.complaint_target - score))
        u.score = round(min(1.0, max(0.0, new)), 4)
        u.last_at = max(u.last_at, at)
        u.messages += 1
        if state.swept_at is None or at - state.swept_at >= self._sweep_every:
            self.evict_idle(state, at)
        return u.score

    def evict_idle(self, state: SatisfactionState, now: datetime) -> int:
        """Forget users not seen for `idle_days` before `now` (event time); returns how many."""
        cutoff = now - self._idle
        stale = [k for k, u in state.users.items() if u.last_at < cutoff]
        for k in stale:
            del state.users[k]
        if state.touched is not None:
            state.touched.update(stale)
        state.swept_at = now if state.swept_at is None else max(state.swept_at, now)
        return len(stale)

    def is_low(self, score: float) -> bool:
        return score < self.c.low

    def is_high(self, score: float) -> bool:
        return score > self.c.high
