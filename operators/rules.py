"""Message type by rules (docs/rules.md §2). Pure and precompiled: build once per configuration.

How a user's text is typed:
1. The text is normalised (NFKC, case-folded, @mentions removed) and scanned once for every weighted
   keyword and pattern of the configuration (`TermMatcher`).
2. Each keyword votes for its type; a keyword of a negatable type right after a negator is dropped
   ("不是投诉", "没有删").
3. Context moves votes between types (who is addressed, which speech act):
   - a private operation asked about in its own clause or supposed ("商品可以删吗", "如果我删了") is an
     ordinary question (owners asking each other: discussing); one reported, then asked about
     ("我删了个视频，没事吧？"), stays the operation;
   - a vocative opening the message ("姐妹们，…") makes a following "你们" mean the other owners;
     owners speaking with each other ("我也是", "别急", an @ of an owner) with no other rule firing
     are discussing (chat_complain_discuss), a mere greeting to everyone ("大家好") is not;
   - soft complaint words between owners (peer words, no @ of us) are grumbling (chat_complain_discuss),
     grumbling addressed to us is a complaint; strong words (投诉, 举报, 退款) stay complaints;
   - owners asking each other ("大家都结算了吗") are discussing;
   - acknowledgements (docs/rules.md §7 response words) vote for cooperation, also after fillers and time
     words ("明天上午可以"); one negated by a refusal negator ("现在不行", not "没收到") and the refusal
     words count as a refusal, which is cooperation too (the owner answers a request), unless supposed
     ("早知道不弄了") or said in anger (complaint words: "不弄了，烦死了" is a complaint).
4. The best score wins (ties by docs/rules.md priority); below `threshold` a question is chat_daily, other
   readable text small talk (chat_daily), and nothing readable (emoji, "。。。") chat_other.

Staff and assistants: @ of an owner (never "@我") -> by speech act: an answer -> staff_reply_user, a
question without task cues (or ending on one) -> staff_ask_user, else staff_at_user; no @: a question -> staff_ask_user, answer cues -> staff_reply_user, else staff_other; in an internal
room there is no owner, so staff_other. Operators: harsh words, insults, ultimatums and contempt
patterns, more than two "!" (softened by politeness, not counted for the operator's own action: "我马上安排",
nor in calm phrases: "马上就好") -> operator_tone_hard; task words (actions, deadlines, instructions to
owners), made stronger by an @ of an owner (an @ alone assigns nothing) -> operator_assign_user; self
introductions, reassurance and words to our own staff count against a task; else operator_other.

Non-text messages are typed by kind: a user's video is taken as the requested selfie/work video
(chat_cooperation), any other user media is chat_other with the kind as the reason (an after-sales
screenshot cannot be told from any other picture without the session; the session step can link it);
colleagues' media is staff_other / operator_other. Quoted replies (15) and textType 0 with text are
read as text; other codes, listed or not, by kind.

Labelling conventions (tests/data/labelled_messages.jsonl follows them): a bare acknowledgement
("在", "好的", "嗯", "ok") answers a request, so chat_cooperation; thanks, greetings and small talk are
chat_daily; emoji, stickers ("[捂脸]"), bare links and ads are chat_other; an owner's report of a done
task ("码扫好了") is cooperation, a problem with one ("扫了没反应") after-sales; "@所有人" counts as
an @ of owners; a staff @ carrying only an answer is staff_reply_user.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, NamedTuple

from operators.sender import SenderResolver
from worktool.config import BusinessConfig, ClassifierConfig, TermRules
from worktool.linear_regex import LinearRegex, PatternSet, escape
from worktool.models import INTERNAL_ROOM_TYPES, Message, SenderType

TEXT_KINDS = frozenset({0, 1, 15})  # read as text when they carry any

# Tie-break order among equal scores: docs/rules.md priority, the most urgent first.
USER_TYPE_ORDER = (
    "chat_complaint",
    "chat_private_operation",
    "chat_after_sales",
    "chat_cooperation",
    "chat_complain_discuss",
    "chat_daily",
    "chat_other",
)
_USER_TYPE_RANK = {code: i for i, code in enumerate(USER_TYPE_ORDER)}
_CLAUSE_BREAKS = frozenset(",.;:!?。;、\n~…")


def normalize_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class Hit(NamedTuple):  # a NamedTuple: several per message, cheap to build
    label: str
    term: str
    start: int
    end: int
    weight: float


class TermMatcher:
    """Finds weighted keywords (substrings) and regex patterns in one pass.

    A keyword hit strictly inside a longer keyword hit of the same group is dropped, whatever its label:
    "说好的" hides "好的", "不配合" hides "配合". Labels are in group "" unless `groups` says otherwise
    (so one scan can serve independent readers, e.g. the sentiment lexicon). Pattern hits are kept.
    """

    def __init__(
        self,
        keywords: Mapping[str, Mapping[str, float]],
        patterns: Mapping[str, Iterable[tuple[LinearRegex, float]]] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        entries: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for label, terms in keywords.items():
            for term, weight in terms.items():
                norm = normalize_text(term)
                if norm and weight > 0:
                    entries[norm].append((label, weight))
        # The regex below reports only the longest keyword at each position; every other keyword
        # starting there is a prefix of it, so each term carries its keyword prefixes, longest first:
        # term -> ((label, weight, length), ...).
        self._labels = {
            term: tuple(
                (label, weight, k)
                for k in range(len(term), 0, -1)
                if term[:k] in entries
                for label, weight in entries[term[:k]]
            )
            for term in entries
        }
        # One lookahead over a trie of the keywords: the C regex engine finds the longest keyword
        # starting at every position (overlaps included).
        first = re.escape("".join(sorted({t[0] for t in entries})))
        self._keywords = re.compile(f"(?=[{first}])(?=({_trie_regex(entries)}))") if entries else None
        found = [(label, p, w) for label, ps in (patterns or {}).items() for p, w in ps if w > 0]
        # RE2 (linear time); one set pass finds which patterns match, only those are run for the span
        self._pattern_labels = [(label, w) for label, _, w in found]
        self._patterns = PatternSet(p for _, p, _ in found)
        self._groups = dict(groups or {})

    def scan(self, text: str) -> list[Hit]:
        hits: list[Hit] = []
        if self._keywords is not None:
            labels = self._labels
            for m in self._keywords.finditer(text):
                term = m.group(1)
                start = m.start()
                for label, w, length in labels[term]:
                    hits.append(Hit(label, term[:length], start, start + length, w))
            if len(hits) > 1:
                hits = self._drop_nested(hits)
        for i, (start, end) in self._patterns.search_all(text):
            label, weight = self._pattern_labels[i]
            hits.append(Hit(label, text[start:end], start, end, weight))
        return hits

    def _drop_nested(self, hits: list[Hit]) -> list[Hit]:
        """Hits come ordered by start, the longest first at each start."""
        groups = self._groups
        kept: list[Hit] = []
        cover: dict[str, tuple[int, int]] = {}  # group -> span of its furthest-reaching kept hit
        for h in hits:
            group = groups.get(h.label, "")
            span = cover.get(group)
            if span is not None and h.end <= span[1] and (h.start, h.end) != span:
                continue
            kept.append(h)
            if span is None or h.end > span[1]:
                cover[group] = (h.start, h.end)
        return kept


def _trie_regex(terms: Iterable[str]) -> str:
    """A regex matching any of `terms`, longest first, shaped as a trie (far fewer branches to try)."""
    trie: dict[str, dict] = {}
    for term in terms:
        node = trie
        for ch in term:
            node = node.setdefault(ch, {})
        node[""] = {}  # a term ends here

    def build(node: dict[str, dict]) -> str:
        alternatives = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alternatives:
            return ""
        if len(alternatives) == 1 and "" not in node:
            return alternatives[0]
        body = "|".join(alternatives)
        return f"(?:{body})?" if "" in node else f"(?:{body})"  # greedy: the longer term first

    return build(trie)


class Negation:
    """Is a word at `start` negated? A negator within `window` characters before it, in the same
    clause, that is not part of an exception word ("不小心", "是不是")."""

    def __init__(self, negators: Iterable[str], exceptions: Iterable[str], window: int) -> None:
        self.negators = frozenset(negators)
        self.window = window
        # negator character -> [(exception word, offset of the negator inside it)]
        self._exceptions: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for word in exceptions:
            word = normalize_text(word)
            for k, ch in enumerate(word):
                if ch in self.negators:
                    self._exceptions[ch].append((word, k))

    def starts_negated(self, term: str) -> bool:
        return term[:1] in self.negators

    def before(self, text: str, start: int, window: int | None = None) -> str | None:
        """The negator found before `start`, or None."""
        low = max(0, start - (self.window if window is None else window))
        for j in range(start - 1, low - 1, -1):
            ch = text[j]
            if ch in _CLAUSE_BREAKS:
                return None
            if ch in self.negators and not self._in_exception(text, j):
                return ch
        return None

    def _in_exception(self, text: str, j: int) -> bool:
        return any(text.startswith(word, j - k) for word, k in self._exceptions.get(text[j], ()) if j >= k)


@dataclass(slots=True)
class TypeDecision:
    message_type: str | None
    confidence: float
    reason: str
    need_reply: bool = False
    staff_command: str | None = None
    # The text that was scanned and every hit in it (None when no text was read), so that other
    # readers of the same scan (the sentiment lexicon) need not scan again.
    text: str = ""
    hits: list[Hit] | None = None
    # What the rules read of an owner's message (question, peer, to_us, refused, ...): need_reply uses
    # them, and the trained model takes them as features.
    flags: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Votes:
    scores: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    terms: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, label: str, weight: float, term: str) -> None:
        self.scores[label] += weight
        self.terms[label].append(term)

    def move(self, source: str, target: str, why: str) -> None:
        if self.scores.get(source, 0.0) > 0:
            self.scores[target] += self.scores.pop(source)
            self.terms[target].extend(f"{t}<{why}" for t in self.terms.pop(source, []))


@dataclass(slots=True)
class _UserReading:
    """What one pass over a user's hits found (`MessageTypeRules._read_user_hits`)."""

    text: str
    typed_starts: set[int]  # where a type keyword starts
    votes: _Votes = field(default_factory=_Votes)
    flags: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    acks: list[Hit] = field(default_factory=list)
    addressed: list[str] = field(default_factory=list)  # addressee words ("你们", "客服")
    vocative: bool = False
    supposed: int = -1  # start of the last hypothetical word ("早知道", "如果")


def confidence(top: float, runner_up: float) -> float:
    """0.45 for a bare threshold win, towards 0.95 for a large, uncontested score."""
    margin = max(0.0, top - 0.5 * runner_up)
    return round(min(0.95, 0.45 + 0.5 * (1.0 - math.exp(-margin / 2.0))), 2)


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _readable(text: str) -> bool:
    """Enough text to be small talk: two letters/CJK characters."""
    return sum(ch.isalpha() for ch in text) >= 2


def _user_fallback(text: str, flags: set[str], question: bool) -> tuple[str, float, str]:
    """A user's type when no score reaches the threshold."""
    if not _has_alnum(text):
        return "chat_other", 0.6, "no readable text"
    if "peer_talk" in flags and "to_us" not in flags:
        return "chat_complain_discuss", 0.4, "owners talking among themselves"
    if question:
        return "chat_daily", 0.45, "ordinary question"
    if _readable(text):
        return "chat_daily", 0.35, "small talk (no rule fired)"
    return "chat_other", 0.5, "too short to read"


_FLAG_LABELS = frozenset({"request", "hypothetical"})


@lru_cache(maxsize=16)
def _clause_breaks(text: str) -> list[int]:
    """Where the clause breaks of `text` are, found once per text (the steps ask for many clauses of
    the same text: a scan per hit would be quadratic in a long message)."""
    return [i for i, ch in enumerate(text) if ch in _CLAUSE_BREAKS]


def _clause_start(text: str, pos: int) -> int:
    """Index where the clause holding `pos` begins."""
    breaks = _clause_breaks(text)
    i = bisect_left(breaks, pos)  # the breaks before pos
    return breaks[i - 1] + 1 if i else 0


def _clause_end(text: str, pos: int) -> int:
    """Index just past the clause holding `pos` (before its break)."""
    breaks = _clause_breaks(text)
    i = bisect_left(breaks, pos)
    return breaks[i] if i < len(breaks) else len(text)


class MessageTypeRules:
    """Message type, confidence, reason, need_reply and staff command of one message, by rules.

    `extra_keywords` ({label: {term: weight}}) are found by the same scan in a group of their own
    (they never hide or are hidden by a type keyword) and handed back in `TypeDecision.hits`.
    """

    def __init__(
        self,
        config: BusinessConfig,
        senders: SenderResolver | None = None,
        extra_keywords: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        c: ClassifierConfig = config.classifier
        self.c = c
        self.senders = senders or SenderResolver(config)
        self.negation = Negation(c.negators, c.negation_exceptions, c.negation_window)
        self.question = c.question_regex
        self._user_rules: dict[str, TermRules] = {code: getattr(c.user, code) for code in USER_TYPE_ORDER}
        resp = self.responses = c.responses
        self._responded = frozenset(normalize_text(w) for w in resp.responded)
        self._question_suffixes = frozenset(normalize_text(w) for w in resp.question_suffixes)
        self._refusing = frozenset(resp.refusal_negators)  # "不行" refuses, "没收到" reports
        # A message made only of acknowledgements, fillers and punctuation/emoji ("好的好的~", "现在可以").
        ack_words = sorted(
            {normalize_text(w) for w in [*resp.responded, *resp.acknowledgements, *resp.fillers]},
            key=len,
            reverse=True,
        )
        # RE2: `(?:在|在的|\W)+` backtracks exponentially in `re` ("在的" x 40 + "z")
        self._ack_only = LinearRegex("(?:" + "|".join(map(escape, ack_words)) + r"|\W|_)+")
        extra = dict(extra_keywords or {})
        groups = dict.fromkeys(extra, "extra")
        self._user = TermMatcher(
            {
                **{code: r.keywords for code, r in self._user_rules.items()},
                "peer": dict.fromkeys(c.peer_words, 1.0),
                "vocative": dict.fromkeys(c.peer_vocatives, 1.0),
                "to_us": dict.fromkeys(c.addressee_words, 1.0),
                "request": dict.fromkeys(c.request_words, 1.0),
                "hypothetical": dict.fromkeys(c.hypothetical_words, 1.0),
                "ack": dict.fromkeys([*resp.responded, *resp.acknowledgements], 1.0),
                "refused": {**dict.fromkeys(resp.refused, resp.refused_weight), **resp.refusal_words},
                **extra,
            },
            {code: r.compiled_patterns for code, r in self._user_rules.items()},
            groups,
        )
        s = c.staff
        self._staff = TermMatcher(
            {"reply": s.reply.keywords, "task": s.task.keywords, "other": s.other.keywords, **extra},
            {
                "reply": s.reply.compiled_patterns,
                "task": s.task.compiled_patterns,
                "other": s.other.compiled_patterns,
            },
            groups,
        )
        o = c.operator
        self._operator = TermMatcher(
            {
                "hard": o.tone_hard.keywords,
                "calm": dict.fromkeys(o.calm, 1.0),
                "polite": o.politeness,
                "assign": o.assign.keywords,
                "other": o.other.keywords,
                **extra,
            },
            {
                "hard": o.tone_hard.compiled_patterns,
                "assign": o.assign.compiled_patterns,
                "other": o.other.compiled_patterns,
            },
            groups,
        )
        self._self_subjects = tuple(
            sorted((normalize_text(w) for w in o.self_subjects), key=len, reverse=True)
        )
        self._vocatives = frozenset(normalize_text(w) for w in c.peer_vocatives)
        self._self_mentions = frozenset(normalize_text(w) for w in s.self_mentions)
        self._commands = [(normalize_text(k), v) for k, v in c.staff_commands.items()]
        self._reply_types = frozenset(c.reply_types)
        self._always_reply = frozenset(c.always_reply_types)

    # -----------------------------------------------------------------------------------------
    def decide(self, m: Message, sender_type: SenderType, text: str | None = None) -> TypeDecision:
        """`text` is `text_of(m)` when the caller already has it."""
        if sender_type == "robot":
            return TypeDecision(None, 1.0, "robot message: recorded, never typed")
        if text is None:
            text = self.text_of(m)
        if m.text_type not in TEXT_KINDS or not text.strip():
            if sender_type in ("staff", "assistant") and m.text_type in TEXT_KINDS and self.owner_mentions(m):
                return TypeDecision(
                    "staff_at_user", 0.7, "bare @ of an owner: a reminder", text=text, hits=[]
                )
            return self._non_text(m, sender_type)
        if sender_type == "user":
            return self._user_type(m, text)
        command, text = self._command(text)
        # staff and assistants share the staff codes
        d = self._operator_type(m, text) if sender_type == "operator" else self._staff_type(m, text)
        if command is not None:
            d.staff_command = command
            d.reason = f"command {command}; {d.reason}"
        return d

    def text_of(self, m: Message) -> str:
        """Normalised text without @mentions (a mentioned name is not content)."""
        text = m.text or m.raw_text
        for name in m.mentions:
            text = text.replace("@" + name, " ")
        return normalize_text(text)

    def is_question(self, text: str) -> bool:
        return self.question.search(text) is not None

    # -----------------------------------------------------------------------------------------
    def _non_text(self, m: Message, sender_type: SenderType) -> TypeDecision:
        kind = m.content_kind if m.text_type not in TEXT_KINDS else "empty text"
        if sender_type == "user":
            if kind == "video":
                return TypeDecision("chat_cooperation", 0.5, "video: taken as the requested video")
            return TypeDecision("chat_other", 0.6, kind)
        code = "operator_other" if sender_type == "operator" else "staff_other"
        return TypeDecision(code, 0.7, kind)

    def _command(self, text: str) -> tuple[str | None, str]:
        found = [(text.find(k), k, v) for k, v in self._commands if k in text]
        if not found:
            return None, text
        command = min(found)[2]
        for _, k, _ in found:
            text = text.replace(k, " ")
        return command, text

    def owner_mentions(self, m: Message) -> list[str]:
        return [
            n
            for n in m.mentions
            if self.senders.sender_type(n, m.room_type) == "user"
            and normalize_text(n) not in self._self_mentions
        ]

    # -----------------------------------------------------------------------------------------
    def _user_type(self, m: Message, text: str) -> TypeDecision:
        """The steps of the module docstring: scan and vote, flags from the addressees, the
        acknowledgement and context moves, then the best score or a fallback."""
        hits = self._user.scan(text)
        r = self._read_user_hits(text, hits)
        question = self.is_question(text)
        if question:
            r.flags.add("question")
        self._addressee_flags(m, r)
        if r.acks:
            self._acknowledgement(text, r.acks, r.votes, r.flags)
        self._context(text, r.votes, r.flags, hits)
        context = sorted(r.flags) + r.notes
        code, conf, reason = self._rank_user(text, r.votes, r.flags, question)
        if context:
            reason += " | " + ", ".join(context)
        flags = frozenset(r.flags)
        need_reply = self.need_reply(code, flags, m)
        return TypeDecision(code, conf, reason, need_reply, text=text, hits=hits, flags=flags)

    def _read_user_hits(self, text: str, hits: list[Hit]) -> _UserReading:
        """One pass over the hits, in order: type keywords vote (unless negated), acknowledgements are
        set aside, refusals vote for cooperation, the other labels become flags."""
        r = _UserReading(text, typed_starts={h.start for h in hits if h.label in self._user_rules})
        for h in hits:
            rules = self._user_rules.get(h.label)
            if rules is not None:
                self._vote_type_word(r, h, rules)
            elif h.label == "ack":
                self._read_ack(r, h)
            elif h.label == "refused":
                self._read_refusal(r, h)
            else:
                self._read_flag(r, h)
        return r

    def _vote_type_word(self, r: _UserReading, h: Hit, rules: TermRules) -> None:
        if (
            rules.negatable
            and not self.negation.starts_negated(h.term)
            and self.negation.before(r.text, h.start)
        ):
            r.notes.append(f"negated {h.term}")
            return
        r.votes.add(h.label, h.weight, h.term)

    def _read_ack(self, r: _UserReading, h: Hit) -> None:
        text = r.text
        if text[h.end : h.end + 1] in self._question_suffixes:
            return  # a question, not an answer
        if h.term in self._responded and self.negation.before(text, h.start, window=1) in self._refusing:
            r.votes.add(
                "chat_cooperation",
                self.responses.negated_response_weight,
                f"{text[h.start - 1]}{h.term}",
            )
            r.flags.add("refused")
            return
        r.acks.append(h)

    def _read_refusal(self, r: _UserReading, h: Hit) -> None:
        if h.end in r.typed_starts:
            return  # "不想投诉": the word negates the next one, it refuses nothing
        if r.supposed >= 0 and _clause_start(r.text, h.start) <= r.supposed:
            r.notes.append(f"supposed {h.term}")  # "早知道不弄了": regret, no answer to a request
            return
        r.votes.add("chat_cooperation", h.weight, h.term)
        r.flags.add("refused")

    def _read_flag(self, r: _UserReading, h: Hit) -> None:
        label = h.label
        if label == "to_us":
            r.addressed.append(h.term)
        elif label == "peer":
            r.flags.add("peer")
            if h.term not in self._vocatives:
                r.flags.add("peer_talk")  # "我也是", "别急": speaking with another owner
        elif label == "vocative":
            # "姐妹们，…" opening the message: it speaks to the other owners
            if _clause_start(r.text, h.start) == 0:
                r.vocative = True
                r.flags.add("peer")
        elif label in _FLAG_LABELS:
            r.flags.add(label)
            if label == "hypothetical":
                r.supposed = h.start

    def _addressee_flags(self, m: Message, r: _UserReading) -> None:
        """Who is spoken to: addressee words, an @ of us, @s of owners or of colleagues."""
        # after a vocative, "你们" means the owners addressed; other addressee words still mean us
        if any(not (r.vocative and t.startswith("你")) for t in r.addressed):
            r.flags.add("to_us")
        owners, colleagues = self.addressees(m)
        if m.at_me or colleagues:
            r.flags.add("to_us")
        if owners:
            r.flags.update(("peer", "peer_talk"))

    def addressees(self, m: Message) -> tuple[bool, bool]:
        """(an owner is @-mentioned, one of us is @-mentioned): all a user's type reads of the @s."""
        owners = colleagues = False
        for name in m.mentions:
            if self.senders.sender_type(name, m.room_type) == "user":
                owners = True
            else:
                colleagues = True
        return owners, colleagues

    def _rank_user(self, text: str, votes: _Votes, flags: set[str], question: bool) -> tuple[str, float, str]:
        """The best score (ties by priority) when it reaches the threshold, else a fallback."""
        ranked = sorted(votes.scores.items(), key=lambda kv: (-kv[1], _USER_TYPE_RANK[kv[0]]))
        if ranked and ranked[0][1] >= self.c.threshold:
            code, top = ranked[0]
            runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
            conf = confidence(top, runner_up)
            if "ack_only" in flags and code == "chat_cooperation":
                conf = max(conf, 0.9)
            return code, conf, f"{code} {top:.1f}: " + ", ".join(votes.terms[code])
        return _user_fallback(text, flags, question)

    def _act_asked(self, text: str, hits: list[Hit]) -> bool:
        """Is the question in the clause of a private operation ("我可以删吗")? One reported and then
        asked about ("我删了个视频，没事吧？") is still the operation."""
        for h in hits:
            if h.label == "chat_private_operation":
                clause = text[_clause_start(text, h.start) : _clause_end(text, h.end)]
                if self.question.search(clause) is not None:
                    return True
        return False

    def _acknowledgement(self, text: str, acks: list[Hit], votes: _Votes, flags: set[str]) -> None:
        if self._ack_only.fullmatch(text):
            votes.add("chat_cooperation", self.responses.ack_only_weight, acks[0].term)
            flags.update(("ack_only", "responded"))
            return
        # An acknowledgement opening a clause ("好的，马上弄"), or making one with fillers and time
        # words ("明天上午可以，今天在外地"); inside a clause "在" or "可以" mean nothing.
        checked: set[tuple[int, int]] = set()  # clauses found not to be acknowledgements only
        for h in acks:
            start = _clause_start(text, h.start)
            opens = start == h.start or text[h.start - 1] == " "
            clause = (start, _clause_end(text, h.end))
            if opens or (clause not in checked and self._ack_only.fullmatch(text, *clause)):
                votes.add("chat_cooperation", self.responses.ack_weight, h.term)
                flags.add("responded")
                return
            checked.add(clause)

    def _context(self, text: str, votes: _Votes, flags: set[str], hits: list[Hit]) -> None:
        c = self.c
        peer, to_us = "peer" in flags, "to_us" in flags
        if votes.scores.get("chat_private_operation") and (
            "hypothetical" in flags or ("question" in flags and self._act_asked(text, hits))
        ):
            # asking about or supposing an operation: an ordinary question, or owners asking each other
            target = "chat_complain_discuss" if peer and not to_us and "question" in flags else "chat_daily"
            votes.move("chat_private_operation", target, "asked")
        if peer and not to_us:
            strong = sum(
                h.weight
                for h in hits
                if h.label == "chat_complaint" and h.weight >= c.complaint_strong_weight
            )
            soft = votes.scores.get("chat_complaint", 0.0) - strong
            if soft > 0:
                votes.scores["chat_complaint"] = strong
                votes.add("chat_complain_discuss", soft, "complaint words between owners")
            if "question" in flags:
                votes.add("chat_complain_discuss", c.peer_question_weight, "owners asking each other")
        elif to_us and not peer:
            votes.move("chat_complain_discuss", "chat_complaint", "to us")
        if "refused" in flags and votes.scores.get("chat_complaint", 0.0) >= c.threshold:
            # a refusal in anger ("不弄了，烦死了") is a complaint, not an answer to the request
            votes.move("chat_cooperation", "chat_complaint", "angry refusal")

    def need_reply(self, code: str, flags: frozenset[str] | set[str], m: Message) -> bool:
        """docs/rules.md §5: a question or request addressed to us, of a type that gets replies."""
        if code not in self._reply_types:
            return False
        if "peer" in flags and "to_us" not in flags:
            return False
        if code in self._always_reply:
            return True
        if "refused" in flags or "ack_only" in flags:
            return False
        return bool(m.at_me or {"question", "request"} & flags)

    # -----------------------------------------------------------------------------------------
    def _staff_type(self, m: Message, text: str) -> TypeDecision:
        s = self.c.staff
        hits = self._staff.scan(text)
        if m.room_type in INTERNAL_ROOM_TYPES:
            return TypeDecision(
                "staff_other", 0.8, "internal room: no owner to address", text=text, hits=hits
            )
        if not _has_alnum(text):
            return TypeDecision("staff_other", 0.7, "no readable text", text=text, hits=hits)
        scores: dict[str, float] = defaultdict(float)
        terms: dict[str, list[str]] = defaultdict(list)
        for h in hits:
            scores[h.label] += h.weight
            terms[h.label].append(h.term)
        reply, task, other = scores["reply"], scores["task"], scores["other"]

        def why(label: str) -> str:
            return ", ".join(terms[label])

        owners = self.owner_mentions(m)
        question = self.is_question(text)
        if owners:
            # the speech act decides: an answer -> reply, a question -> ask, else a task or reminder;
            # a message ending on a question asks, whatever answer-like words it holds
            ends_asking = question and self.is_question(
                text[_clause_start(text, len(text.rstrip(" ?")) - 1) :]
            )
            answers = (reply >= s.at_reply_min and reply > task) or (
                not task and not question and reply >= s.reply_threshold
            )
            if answers and not (ends_asking and not task):
                code, conf, reason = (
                    "staff_reply_user",
                    confidence(reply, task),
                    f"@{owners[0]} with an answer: {why('reply')}",
                )
            elif question and not task:
                code, conf, reason = "staff_ask_user", 0.7, f"@{owners[0]} with a question"
            else:
                code, conf, reason = (
                    "staff_at_user",
                    0.9 if task else 0.75,
                    f"@{owners[0]}: {why('task') or 'mention'}",
                )
        elif question:
            code, conf, reason = "staff_ask_user", 0.75, "question"
        elif reply >= s.reply_threshold and reply > other:
            code, conf, reason = "staff_reply_user", confidence(reply, other), f"answer: {why('reply')}"
        elif other:
            code, conf, reason = "staff_other", confidence(other, reply), f"other: {why('other')}"
        else:
            code, conf, reason = "staff_other", 0.4, "no rule fired"
        return TypeDecision(code, conf, reason, text=text, hits=hits)

    # -----------------------------------------------------------------------------------------
    def _operator_type(self, m: Message, text: str) -> TypeDecision:
        o = self.c.operator
        hits = self._operator.scan(text)
        hard = polite = assign = other = 0.0
        hard_terms: list[str] = []
        assign_terms: list[str] = []
        notes: list[str] = []
        for h in hits:
            if h.label == "hard":
                if not self.negation.starts_negated(h.term) and self.negation.before(text, h.start):
                    notes.append(f"negated {h.term}")
                elif text[: h.start].rstrip().endswith(self._self_subjects):
                    notes.append(f"own action {h.term}")
                else:
                    hard += h.weight
                    hard_terms.append(h.term)
            elif h.label == "polite":
                polite += h.weight
            elif h.label == "assign":
                assign += h.weight
                assign_terms.append(h.term)
            elif h.label == "other":
                other += h.weight
        exclamations = text.count("!")
        if exclamations > o.exclamation_limit:
            hard += o.exclamation_weight
            hard_terms.append(f"{exclamations}x!")
        if hard_terms and hard - polite >= o.hard_threshold:
            reason = "harsh: " + ", ".join(hard_terms) + (f" (politeness -{polite:.1f})" if polite else "")
            return TypeDecision(
                "operator_tone_hard", confidence(hard - polite, 0.0), reason, text=text, hits=hits
            )
        owners = self.owner_mentions(m)
        if owners and assign > 0:  # an @ makes a task of task words; alone it assigns nothing
            assign += o.mention_weight
            assign_terms.append(f"@{owners[0]}")
        assign -= other
        if assign >= o.assign_threshold:
            return TypeDecision(
                "operator_assign_user",
                confidence(assign, 0.0),
                "task: " + ", ".join(assign_terms),
                text=text,
                hits=hits,
            )
        reason = "no task or harsh words" + (" | " + ", ".join(notes) if notes else "")
        return TypeDecision("operator_other", 0.5, reason, text=text, hits=hits)


# ---------------------------------------------------------------------------------------------
ResponseStatus = Literal["responded", "refused"]


class ResponseDetector:
    """docs/rules.md §7 user-response monitoring after a staff @: `responded` on a response word, `refused`
    on a refusal word or a negated response word ("现在不行"); a refusal wins over a response."""

    def __init__(self, config: ClassifierConfig) -> None:
        self._negation = Negation(config.negators, config.negation_exceptions, config.negation_window)
        self._matcher = TermMatcher(
            {
                "responded": dict.fromkeys(config.responses.responded, 1.0),
                "refused": dict.fromkeys(config.responses.refused, 1.0),
            }
        )
        self._question_suffixes = frozenset(normalize_text(w) for w in config.responses.question_suffixes)

    def status(self, text: str) -> ResponseStatus | None:
        text = normalize_text(text)
        responded = False
        for h in self._matcher.scan(text):
            if h.label == "refused" or self._negation.before(text, h.start, window=1):
                return "refused"
            if text[h.end : h.end + 1] not in self._question_suffixes:
                responded = True
        return "responded" if responded else None
