"""The rule classifier's cache of owners' classifications gives exactly what classifying afresh gives:
on every labelled set, with the same texts under other @-mentions, `at_me` and rooms, cold and warm."""

from __future__ import annotations

from dataclasses import replace

import pytest

from classifiers import BUILTIN_MODEL
from classifiers.labelled import labelled_message, load_labelled, roster_for
from operators.classify import RuleClassifier
from operators.type_model import TypeModel
from tests.support import DATA
from worktool.config import load_config
from worktool.models import Message

SETS = ["labelled_messages.jsonl", "blind_messages.jsonl", "blind2_messages.jsonl", "blind_a_messages.jsonl"]
MODEL = TypeModel.load(BUILTIN_MODEL)
OWNER, STAFF, ROBOT = "张姐-美食号", "售后小王", "运营助理小A"


def _variants(m: Message) -> list[Message]:
    """The message as sent, and the same text with each input the cache key must hold changed."""
    text = m.text or m.raw_text
    return [
        m,
        replace(m, at_me=not m.at_me),
        replace(m, mentions=(OWNER,), raw_text=f"@{OWNER}\u2005{text}"),
        replace(m, mentions=(STAFF,), raw_text=f"@{STAFF}\u2005{text}"),
        replace(m, mentions=(ROBOT, OWNER), raw_text=f"@{ROBOT}\u2005@{OWNER}\u2005{text}"),
        replace(m, room_type=3 if m.room_type == 1 else 1),
        replace(m, room_type=3, mentions=("某位用户",), raw_text=f"@某位用户\u2005{text}"),
        replace(m, room_type=1, mentions=("某位用户",), raw_text=f"@某位用户\u2005{text}"),
        replace(m, text="", raw_text=text),  # only rawSpoken
        replace(m, text_type=15),
    ]


@pytest.mark.parametrize("model", [None, MODEL], ids=["rules", "rules+model"])
@pytest.mark.parametrize("name", SETS)
def test_cached_classifications_equal_fresh_ones_on_every_labelled_set(name, model):
    """Also: one message at a time gives what a whole batch gives (the model types a batch at once), so
    live and replay, which cut batches differently, classify alike."""
    dataset = DATA / name
    config = load_config(roster_for(dataset))
    messages = [
        v for i, row in enumerate(load_labelled(dataset)) for v in _variants(labelled_message(row, i))
    ]
    fresh = RuleClassifier(config, cache_size=0, model=model)
    cached = RuleClassifier(config, model=model)
    expected = [fresh.classify(m) for m in messages]
    assert RuleClassifier(config, cache_size=0, model=model).classify_batch(messages) == expected
    assert cached.classify_batch(messages) == expected  # cold: every text once per variant
    assert cached.classify_batch(messages) == expected  # warm: from the cache
    assert 0 < len(cached._cache) <= cached.cache_size
    small = RuleClassifier(config, cache_size=16, model=model)  # evicting all the time
    assert small.classify_batch(messages[::-1]) == expected[::-1]
    assert len(small._cache) <= 16


def test_a_repeated_text_is_classified_once():
    config = load_config(DATA / "labelled_roster.yaml")
    classifier = RuleClassifier(config)
    row = {"text": "佣金什么时候结算？", "sender_name": OWNER, "room_type": 1, "text_type": 1, "at_me": False}
    first = classifier.classify(labelled_message(row, 1))
    again = classifier.classify(labelled_message({**row, "sender_name": "另一个用户"}, 2))
    assert again is first  # the same frozen classification, not a second reading
    assert RuleClassifier(config, cache_size=0).classify(labelled_message(row, 3)) == first


def test_long_texts_are_not_kept():
    config = load_config(DATA / "labelled_roster.yaml")
    classifier = RuleClassifier(config)
    row = {"sender_name": OWNER, "room_type": 1, "text_type": 1, "at_me": False}
    classifier.classify(labelled_message({**row, "text": "佣金什么时候结算？" * 40}, 1))  # 360 characters
    assert not classifier._cache  # memory stays bounded whatever the texts
    classifier.classify(labelled_message({**row, "text": "佣金什么时候结算？"}, 2))
    assert len(classifier._cache) == 1
