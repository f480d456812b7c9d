"""Linear-time regular expressions: every pattern of the configuration and of the classifier goes
through here (RE2, google-re2), so no text can make a match run longer than linear in its length.
Pure: a compiled pattern is only computation.

Python's `re` backtracks: a nested quantifier such as `(?:在|在的|\\W)+` tried with `fullmatch` on
"在的" x 40 + "z" runs for hours. RE2 runs an automaton instead, in time linear in the text, and refuses
what an automaton cannot do (look-arounds, back-references): such a pattern is refused when the
configuration loads, with the key that holds it (worktool/config.py).

Written in Python's syntax, with Python's meaning for the Unicode classes outside and inside `[...]`:
`\\w`, `\\d`, `\\s` (and `\\W`, `\\D`, `\\S` outside a class) are translated to their Unicode forms,
`$` matches at the end or before a final newline, `\\Z` is the end. `\\b`/`\\B` are ASCII word boundaries
(RE2 has no other). A look-behind can be written as a consumed prefix with the hit in a group named
`hit`: `(?:^|[^多])(?P<hit>少给)` reports "少给" (its span), not the character before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import re2

HIT_GROUP = "hit"

_W = r"\p{L}\p{N}_"
_D = r"\p{Nd}"
# Python's str.isspace() characters (what `\s` matches in a str pattern)
_S = r"\t-\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
_OUTSIDE = {
    "w": f"[{_W}]",
    "W": f"[^{_W}]",
    "d": _D,
    "D": r"\P{Nd}",
    "s": f"[{_S}]",
    "S": f"[^{_S}]",
    "Z": r"\z",
}
_INSIDE = {"w": _W, "d": _D, "s": _S, "D": r"\P{Nd}"}


class PatternError(ValueError):
    """A pattern RE2 cannot run (look-around, back-reference, bad syntax)."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 32 << 20  # generous for keyword alternations of thousands of words
    return options


_OPTIONS = _options()


def translate(pattern: str) -> str:
    """Python regex syntax -> RE2 syntax with Python's Unicode meaning of the classes."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if in_class:
                if nxt in ("W", "S"):
                    raise PatternError(f"\\{nxt} inside [...] is not supported; write [^...] instead")
                out.append(_INSIDE.get(nxt, ch + nxt))
            else:
                out.append(_OUTSIDE.get(nxt, ch + nxt))
            i += 2
            continue
        if in_class:
            # a "]" right after "[" or "[^" is a literal
            if ch == "]" and i > class_start:
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            class_start = i + 1
            out.append(ch)
            if i + 1 < n and pattern[i + 1] == "^":
                out.append("^")
                i += 1
                class_start = i + 1
        elif ch == "$":
            out.append(r"(?:\n?\z)")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


class LinearRegex:
    """One compiled pattern. `search` gives the span of the hit (the `hit` group when there is one)."""

    __slots__ = ("_hit", "_re", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            self._re = re2.compile(translate(pattern), _OPTIONS)
        except re2.error as e:
            why = e.args[0] if e.args else e
            why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
            raise PatternError(f"not a linear-time (RE2) regular expression {pattern!r}: {why}") from None
        self._hit = self._re.groupindex.get(HIT_GROUP, 0)

    def search(self, text: str, pos: int = 0, endpos: int | None = None) -> tuple[int, int] | None:
        m = self._re.search(text, pos, len(text) if endpos is None else endpos)
        if m is None:
            return None
        start, end = m.span(self._hit)
        if start < 0:  # an unset `hit` group: the whole match
            return m.span()
        return start, end

    def matches(self, text: str) -> bool:
        return self._re.search(text) is not None

    def fullmatch(self, text: str, pos: int = 0, endpos: int | None = None) -> bool:
        return self._re.fullmatch(text, pos, len(text) if endpos is None else endpos) is not None

    def __repr__(self) -> str:
        return f"LinearRegex({self.pattern!r})"


def escape(literal: str) -> str:
    """`literal` as a pattern matching itself (Python syntax, as every pattern here)."""
    out = []
    for ch in literal:
        if ch.isalnum() or ch == "_" or ord(ch) >= 128:
            out.append(ch)
        elif ch.isprintable() and ch != " ":
            out.append("\\" + ch)
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return "".join(out)


def compile_linear(pattern: str) -> LinearRegex:
    return LinearRegex(pattern)


def check_linear(pattern: str) -> str:
    """The pattern, or PatternError (pydantic turns it into an error naming the key)."""
    LinearRegex(pattern)
    return pattern


class PatternSet:
    """Several patterns searched together: one RE2 set pass tells which match, only those are run
    for their span. Cheaper than one search per pattern when few patterns match (the usual case)."""

    def __init__(self, patterns: Iterable[LinearRegex]) -> None:
        self.patterns: Sequence[LinearRegex] = tuple(patterns)
        self._set: re2.Set | None = None
        if len(self.patterns) > 1:
            s = re2.Set.SearchSet(_OPTIONS)
            for p in self.patterns:
                s.Add(translate(p.pattern))
            s.Compile()
            self._set = s

    def search_all(self, text: str) -> list[tuple[int, tuple[int, int]]]:
        """(index, span) of every pattern found in `text`, in pattern order."""
        found = range(len(self.patterns)) if self._set is None else sorted(self._set.Match(text) or ())
        out = []
        for i in found:
            span = self.patterns[i].search(text)
            if span is not None:
                out.append((i, span))
        return out
