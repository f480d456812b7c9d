"""Staff handling of a session (docs/rules.md §3): the staff-active window, inline commands, and the
rule fallback of the reply-quality score. Pure.

Session status:
    auto      automatic replies allowed
    staff     a staff or assistant message less than `staff_window.minutes` ago: no automatic reply
    handover  [转人工]: staff own the session until [恢复回复] or [已解决]
`ai_paused` ([暂停回复] / [恢复回复]) is independent of the status: paused means no automatic reply in
any status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worktool.config import InterventionConfig

_NOT_CONTENT = re.compile(r"@\S+|[\W_]+")


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    score: float
    reason: str


class ReplyQuality:
    """Rule fallback for the quality of a staff reply, in [0, 1]: dismissive words score
    `dismissive_score`, a reply of almost no content `short_score`, anything else 0.8."""

    def __init__(self, config: InterventionConfig) -> None:
        self.c = config

    def score(self, text: str) -> QualityVerdict:
        for word in self.c.dismissive_words:
            if word in text:
                return QualityVerdict(self.c.dismissive_score, f"dismissive: {word}")
        if len(_NOT_CONTENT.sub("", text)) < self.c.short_reply_chars:
            return QualityVerdict(self.c.short_score, "too short to answer anything")
        return QualityVerdict(0.8, "no rule against it")

    def is_low(self, verdict: QualityVerdict) -> bool:
        return verdict.score < self.c.staff_low_quality
