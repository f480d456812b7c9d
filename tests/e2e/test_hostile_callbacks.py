"""Property: whatever WorkTool (or anyone) posts, every callback ends in exactly one place, and the flow
keeps running.

Generated callback bodies (valid, loose-typed and hostile: integers beyond 64 bits, NUL, nesting up to
1,100 levels, over-long ids and names, wrong types, 600 KB texts; JSON and form encoded) go through the
real gateway process into the running live dataflow process, on the embedded broker and PostgreSQL.
Each one either got a 4xx and exactly one DLQ record, or a 200 and exactly one result downstream: a
session_messages row (message), a command_callback monitor event (result, qrcode) or the robot's
status (online, offline); and nothing else. Each example posts with its own robotId (and a message
with its own sender), so every outcome can be traced back to its request.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.support import answers, chaos_scale, consume_all, spawn, spawn_dataflow, stop, wait_until
from worktool.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

NAME_LIMIT = Settings.model_fields["max_name_chars"].default
ID_LIMIT = Settings.model_fields["max_id_chars"].default
BIG_TEXT = "长" * 200_000  # 600 KB of UTF-8

# -- strategies -------------------------------------------------------------------------------
# A body is a valid one (in any of WorkTool's loose spellings) with up to two hostile mutations, so
# that both answers are frequent and each hostile value meets otherwise valid bodies.

plain_text = st.text(max_size=30)
with_nul = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=5), st.text(max_size=5))
huge_ints = st.sampled_from([2**63, -(2**63) - 1, 2**64, 99999999999999999999, 10**30])
wrong_types = st.one_of(
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
floats = st.floats(allow_nan=False, allow_infinity=False)
loose_ints = st.integers(-3, 20).flatmap(lambda i: st.sampled_from([i, str(i), f" {i} "]))

texts = st.one_of(plain_text, plain_text, with_nul, st.integers(), st.none(), st.just(BIG_TEXT))
names = st.one_of(st.text(min_size=1, max_size=12), with_nul.map(lambda t: "n" + t))
hostile_ints = st.one_of(huge_ints, huge_ints.map(str), st.integers(-(2**70), 2**70), floats, st.booleans())
hostile_names = st.one_of(
    st.just("名" * (NAME_LIMIT + 1)), st.integers(-5, 5), st.none(), st.just(""), wrong_types
)
hostile_texts = st.one_of(wrong_types, floats, st.booleans(), st.just(BIG_TEXT + BIG_TEXT))

MESSAGE = {
    "spoken": (texts, wrong_types),
    "rawSpoken": (texts, wrong_types),
    "receivedName": (names, hostile_names),
    "groupName": (names, hostile_names),
    "groupRemark": (st.one_of(st.just(""), names), hostile_names),
    "roomType": (
        st.sampled_from([1, 2, 3, 4, "1", "2", "3", "4"]),
        st.one_of(st.integers(-2, 9), st.just("x")),
    ),
    "atMe": (st.sampled_from([True, False, "true", "false", "TRUE", "0", "", None]), st.just("maybe")),
    "textType": (
        st.sampled_from([0, 1, 2, 3, 15, "1", " 2 "]),
        st.one_of(hostile_ints, st.integers(32768, 10**6)),
    ),
    "fileBase64": (st.text(max_size=8), st.integers()),
}
RESULT = {
    "messageId": (st.one_of(st.text(max_size=20), st.integers(0, 2**63)), st.one_of(huge_ints, floats)),
    "errorCode": (loose_ints, hostile_ints),
    "errorReason": (texts, hostile_texts),
    "runTime": (st.integers(0, 2**62), hostile_ints),
    "timeCost": (floats, st.sampled_from(["inf", "nan", "x"])),
    "type": (loose_ints, hostile_ints),
    "groupName": (names, hostile_names),
    "successList": (st.lists(st.text(max_size=5), max_size=3), st.integers()),
}
STATUS = {
    "status": (st.one_of(st.integers(5, 6), plain_text), st.one_of(huge_ints, with_nul)),
    "text": (texts, hostile_texts),
}
depths = st.one_of(st.just(0), st.just(0), st.sampled_from([2, 31, 33, 254, 300, 1100]))  # 0: not nested


@dataclass(frozen=True)
class Body:
    fields: dict[str, Any]
    depth: int = 0  # > 0: an extra key "nested" holding lists so that the body is `depth` deep


def bodies(
    schema: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]], always: tuple[str, ...] = ()
) -> st.SearchStrategy[Body]:
    """A valid body (the keys of `always` present, the others maybe), then up to two mutations."""
    valid = st.fixed_dictionaries(
        {k: schema[k][0] for k in always},
        optional={k: good for k, (good, _) in schema.items() if k not in always},
    )
    mutation = st.one_of(
        [st.tuples(st.just(k), bad) for k, (_, bad) in schema.items()]
        + [st.tuples(st.just(k), st.just(Ellipsis)) for k in schema]  # a key removed
    )

    def mutate(fields: dict[str, Any], mutations: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(fields)
        for key, value in mutations:
            if value is Ellipsis:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    return st.builds(Body, st.builds(mutate, valid, st.lists(mutation, max_size=2)), depths)


MESSAGE_BODIES = bodies(MESSAGE, always=("receivedName", "groupName"))
CALLBACKS = st.one_of(
    st.tuples(st.just("message"), MESSAGE_BODIES),
    st.tuples(st.just("message"), MESSAGE_BODIES),
    st.tuples(st.sampled_from(["result", "qrcode"]), bodies(RESULT)),
    st.tuples(st.sampled_from(["online", "offline"]), bodies(STATUS)),
)
ROBOT_IDS = st.one_of(
    st.just("plain"), st.just("plain"), st.just("plain"), st.sampled_from(["too_long", "control"])
)
ENCODINGS = st.sampled_from(["json", "json", "form"])


# -- requests ---------------------------------------------------------------------------------


def robot_id_for(n: int, variant: str) -> str:
    prefix = f"p{n}-"
    return {"plain": prefix + "wt", "too_long": prefix + "r" * ID_LIMIT, "control": prefix + "\x00"}[variant]


def request_for(kind: str, body: Body, encoding: str, n: int) -> dict[str, Any]:
    fields = dict(body.fields)
    if kind == "message" and isinstance(fields.get("receivedName"), str):
        fields["receivedName"] = f"u{n}-" + fields["receivedName"]  # one sender per example: no dedup
    if encoding == "form":  # form values are text; a list repeats its key; nesting cannot be sent
        data = {
            k: [str(x) for x in v] if isinstance(v, list) else str(v)
            for k, v in fields.items()
            if v is not None and not isinstance(v, dict)
        }
        return {"data": data}
    raw = json.dumps(fields, ensure_ascii=False)  # the stdlib writes integers of any size
    if body.depth:
        nested = "[" * (body.depth - 1) + "]" * (body.depth - 1)
        raw = raw[:-1] + (", " if fields else "") + f'"nested": {nested}}}'
    return {"content": raw.encode(), "headers": {"content-type": "application/json"}}


@dataclass
class Sent:
    n: int
    kind: str
    robot_id: str
    status: int
    request: str  # for the failure message

    @property
    def key(self) -> str:
        return f"p{self.n}-"


def owner(robot_id: str | None) -> str | None:
    """The example a robot id belongs to ("p12-" of "p12-wt")."""
    if not robot_id or not robot_id.startswith("p"):
        return None
    return robot_id.split("-", 1)[0] + "-"


# -- the test ---------------------------------------------------------------------------------


@pytest.fixture
def stack(settings_factory, unique_topics, tmp_path):
    settings = settings_factory(**unique_topics())
    flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
    gateway = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log")
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), 120, what="/healthz 200")
        yield settings, base, flow, gateway
    finally:
        stop(gateway)
        stop(flow)


def expected(s: Sent) -> Counter[str]:
    """The one outcome an example must have downstream."""
    if s.status != 200:
        return Counter({"dlq:gateway": 1})
    if s.kind == "message":
        return Counter({"row": 1})
    if s.kind in ("result", "qrcode"):
        return Counter({"command_callback": 1})
    return Counter({f"status:{s.kind}": 1})


def outcomes(settings: Settings, sent: list[Sent]) -> dict[str, Counter[str]]:
    """Per example: how many of each outcome were observed downstream."""
    seen: dict[str, Counter[str]] = {s.key: Counter() for s in sent}

    def observed(robot_id: str | None, outcome: str) -> None:
        if (key := owner(robot_id)) in seen:
            seen[key][outcome] += 1

    with psycopg.connect(settings.database_url) as conn:
        for (robot_id,) in conn.execute("SELECT robot_id FROM session_messages").fetchall():
            observed(robot_id, "row")
        for robot_id, status in conn.execute("SELECT robot_id, status FROM robots").fetchall():
            if status in ("online", "offline"):
                observed(robot_id, f"status:{status}")
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap
    for record in consume_all(bootstrap, settings.topic_dlq, idle_s=1):
        observed(record["value"].get("robot_id"), f"dlq:{record['value']['stage']}")
    for record in consume_all(bootstrap, settings.topic_monitor, idle_s=1):
        if record["value"]["event"] == "command_callback":
            observed(record["value"].get("robot_id"), "command_callback")
    return seen


def send_generated_callbacks(base: str) -> list[Sent]:
    """POST 150 generated callbacks (times the chaos scale); each answer must be a 200 or a 4xx."""
    sent: list[Sent] = []
    numbers = itertools.count()
    with httpx.Client(base_url=base, timeout=10) as client:

        @hypothesis_settings(
            max_examples=150 * chaos_scale(),
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        @given(callback=CALLBACKS, robot=ROBOT_IDS, encoding=ENCODINGS)
        def post(callback: tuple[str, Body], robot: str, encoding: str) -> None:
            kind, body = callback
            n = next(numbers)
            robot_id = robot_id_for(n, robot)
            request = request_for(kind, body, encoding, n)
            response = client.post(f"/worktool/callback/{kind}", params={"robotId": robot_id}, **request)
            assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
            summary = f"{kind} {encoding} robot={robot} depth={body.depth} {str(body.fields)[:300]}"
            sent.append(Sent(n, kind, robot_id, response.status_code, summary))

        post()
    return sent


def test_every_callback_ends_in_exactly_one_place_and_the_flow_keeps_running(stack) -> None:
    settings, base, flow, gateway = stack
    sent = send_generated_callbacks(base)
    assert {s.status == 200 for s in sent} == {True, False}, Counter(s.status for s in sent)

    def settled() -> bool:
        """Everything expected arrived, or something arrived that cannot become right."""
        seen = outcomes(settings, sent)
        complete = all(seen[s.key] >= expected(s) for s in sent)  # type: ignore[operator]
        return complete or any(set(seen[s.key]) - set(expected(s)) for s in sent)

    with contextlib.suppress(AssertionError):  # what is missing is reported below, with the bodies
        wait_until(settled, 240, interval=3, what="every callback downstream")
    time.sleep(2)  # a record written twice would have landed by now
    seen = outcomes(settings, sent)
    wrong = [f"{s.request} -> {s.status}: {dict(seen[s.key])}" for s in sent if seen[s.key] != expected(s)]
    assert not wrong, "\n".join(wrong[:20])
    assert flow.poll() is None, "the dataflow stopped"
    assert gateway.poll() is None, "the gateway stopped"
    assert answers(f"{base}/healthz")
