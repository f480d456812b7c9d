"""The head of the flow after its per-record work was cut (issue 14): `parse_message` (Message set through
its slots, no regex pass without an "@"), `Deduplicator.observe` (a new message: one dict lookup) and
`GapDetector.seen` (the next number: no hole work) give exactly what the code before gave, which is kept
here as the reference, on generated inputs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from operators.dedup import Deduplicator, Verdict, _Seen
from operators.gaps import GapDetector, Gateway, Hole, SeqMark
from operators.parse import _message, parse_message
from worktool.models import (
    GROUP_ROOM_TYPES,
    TEXT_TYPES,
    Message,
    MessageCallback,
    MessageRecord,
    RawRecord,
    StrictMessageBody,
    session_id_for,
)

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
SETTINGS = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------ parse (reference)

_MENTION = re.compile(r"@([^\s@\u2005]+)")


def _reference_parse(record: RawRecord) -> tuple[str, Message]:
    body: Any = (
        record.body
        if isinstance(record.body, MessageCallback | StrictMessageBody)
        else MessageCallback.model_validate(record.body)
    )
    session_id = session_id_for(record.robot_id, body)
    is_group = body.roomType in GROUP_ROOM_TYPES
    if is_group and not (body.groupName or body.groupRemark):
        raise ValueError("group message without groupName or groupRemark")
    raw_text = body.rawSpoken or body.spoken
    content_key = (
        raw_text if body.textType == 1 or raw_text else f"<{body.textType}:{len(body.fileBase64 or '')}>"
    )
    key = f"{session_id}\x1f{body.receivedName}\x1f{body.textType}\x1f{content_key}"
    fp = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    stamp = f"{fp}\x1f{record.received_at.timestamp():.3f}"
    return fp, Message(
        message_id="m_" + hashlib.blake2b(stamp.encode(), digest_size=10).hexdigest(),
        session_id=session_id,
        robot_id=record.robot_id,
        received_at=record.received_at,
        room_type=body.roomType,
        is_group=is_group,
        group_name=body.groupName,
        group_remark=body.groupRemark,
        sender_name=body.receivedName,
        text=body.spoken,
        raw_text=raw_text,
        text_type=body.textType,
        content_kind=TEXT_TYPES.get(body.textType, "unknown"),
        at_me=body.atMe,
        mentions=tuple(dict.fromkeys(_MENTION.findall(raw_text))),
        reply_target=(body.groupRemark or body.groupName) if is_group else body.receivedName,
        has_file=bool(body.fileBase64),
    )


def _outcome(f: Any, record: RawRecord) -> Any:
    try:
        return f(record)
    except (ValidationError, ValueError) as e:
        return type(e).__name__, str(e)


_text = st.text(alphabet=st.sampled_from("ab @@\u2005\x00 群甲\n"), max_size=12)
_name = st.text(alphabet=st.sampled_from("ab 群甲@\x00"), max_size=6)  # "" is refused (a sender, a group)
_bodies = st.fixed_dictionaries(  # bodies in WorkTool's loose spellings, and some refused
    {"receivedName": _name, "groupName": st.one_of(_name, st.integers(0, 9))},
    optional={
        "spoken": st.one_of(_text, st.none()),
        "rawSpoken": _text,
        "groupRemark": st.one_of(_name, st.none()),
        "roomType": st.sampled_from([1, 2, 3, 4, "1", "3", " 2", 0, 9, True, None]),
        "atMe": st.sampled_from([True, False, "true", "false", "yes", " TRUE", 1, 2, None, "maybe"]),
        "textType": st.sampled_from([0, 1, 2, 3, 15, 99, "1", "2", -1, 1.0, True, 2**40]),
        "fileBase64": st.one_of(st.none(), _text),
    },
)


@SETTINGS
@given(
    body=_bodies,
    robot=st.sampled_from(["wt_day", "wt_night"]),
    micros=st.integers(0, 10**10),
)
def test_parse_message_gives_what_it_gave(body: dict, robot: str, micros: int) -> None:
    at = T0 + timedelta(microseconds=micros)
    record = RawRecord(kind="message", robot_id=robot, received_at=at, body=body)
    assert _outcome(parse_message, record) == _outcome(_reference_parse, record)
    try:  # the dataflow's one-pass model, where it takes the record
        strict = MessageRecord.model_validate_json(record.to_json())
    except ValidationError:
        return
    assert _outcome(parse_message, strict) == _outcome(_reference_parse, strict)


def test_the_message_builder_sets_every_field() -> None:
    values = {f.name: f"v{i}" for i, f in enumerate(fields(Message))}
    built = _message(**values)
    assert built == Message(**values)
    with pytest.raises(TypeError):
        _message(*values.values())  # by keyword only: a field added or moved cannot shift the others
    with pytest.raises(AttributeError):
        built.text = "changed"  # type: ignore[misc]  # still frozen


# ------------------------------------------------------------------------------ dedup (reference)


class _ReferenceDeduplicator(Deduplicator):
    def observe(self, fp: str, message_id: str, robot_id: str, at: datetime, window: timedelta) -> Verdict:
        entry = self._seen.get(fp)
        if entry is not None and abs(at - entry.first_at) <= window:
            stamp = (robot_id, at)
            if stamp in entry.stamps:
                return Verdict(True, entry.message_id, robot_is_new=False)
            if robot_id not in entry.robots:
                entry.robots.add(robot_id)
                entry.stamps.add(stamp)
                return Verdict(True, entry.message_id, robot_is_new=True)
        self._seen.pop(fp, None)
        self._seen[fp] = _Seen(message_id, at, {robot_id}, {(robot_id, at)})
        return Verdict(False, message_id, robot_is_new=True)


_reports = st.lists(
    st.tuples(
        st.sampled_from(["fp1", "fp2", "fp3"]),
        st.sampled_from(["wt_day", "wt_night", "wt_monitor"]),
        st.integers(0, 40),  # seconds (may go back: a late record)
        st.booleans(),  # prune at this report
    ),
    max_size=40,
)


@SETTINGS
@given(reports=_reports)
def test_dedup_gives_what_it_gave(reports: list[tuple[str, str, int, bool]]) -> None:
    window = timedelta(seconds=10)
    new, old = Deduplicator(), _ReferenceDeduplicator()
    for i, (fp, robot, seconds, prune) in enumerate(reports):
        at = T0 + timedelta(seconds=seconds)
        assert new.observe(fp, f"m{i}", robot, at, window) == old.observe(fp, f"m{i}", robot, at, window)
        if prune:
            new.prune(at, window)
            old.prune(at, window)
        assert new.snapshot() == old.snapshot()


# ------------------------------------------------------------------------------ gaps (reference)


class _ReferenceGaps(GapDetector):
    def seen(self, mark: SeqMark) -> list[tuple[str, Hole]]:
        g = self.gateways.get(mark.gw)
        if g is None:
            g = self.gateways[mark.gw] = Gateway(high=min((mark.n, *mark.void)) - 1, last=mark.at, holes=[])
        g.last = max(g.last, mark.at)
        changed: list[tuple[str, Hole]] = []
        for n in (*sorted(mark.void), mark.n):
            if n > g.high:
                if n > g.high + 1:
                    lo, hi = g.high + 1, n - 1
                    hole_id = (
                        "gap_" + hashlib.blake2b(f"{mark.gw}\x1f{lo}".encode(), digest_size=8).hexdigest()
                    )
                    g.holes.append(Hole(hole_id, mark.gw, lo, hi, mark.at, [[lo, hi]]))
                g.high = n
                continue
            for hole in g.holes:
                if hole.lo <= n <= hole.hi and hole.take(n):
                    if hole.reported:
                        changed.append(("closed" if not hole.open else "corrected", hole))
                    break
        g.holes = [h for h in g.holes if h.open]
        return changed


_marks = st.lists(
    st.tuples(
        st.sampled_from(["gw1", "gw2"]),
        st.integers(1, 30),
        st.lists(st.integers(1, 30), max_size=3),  # void
        st.integers(0, 300),  # seconds
        st.booleans(),  # a tick (due) after it
    ),
    max_size=50,
)


@SETTINGS
@given(marks=_marks)
def test_gaps_give_what_they_gave(marks: list[tuple[str, int, list[int], int, bool]]) -> None:
    grace = timedelta(seconds=60)
    new, old = GapDetector(grace), _ReferenceGaps(grace)
    for gw, n, void, seconds, tick in marks:
        at = T0 + timedelta(seconds=seconds)
        mark = SeqMark(gw, n, at, tuple(void))
        got, want = new.seen(mark), old.seen(mark)
        assert [(s, h.hole_id, h.open) for s, h in got] == [(s, h.hole_id, h.open) for s, h in want]
        if tick:
            assert [h.hole_id for h in new.due(at)] == [h.hole_id for h in old.due(at)]
        assert new.snapshot() == old.snapshot()
