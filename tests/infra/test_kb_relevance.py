"""Search relevance on the shipped knowledge set (commands/data/kb_channels_shop.jsonl, WeChat Channels
shop operations): 36 questions as owners ask them (tests/data/kb/relevance_queries.jsonl, written apart
from the passages: other words, colloquial), each with the passage that answers it. The top-3 hit rate
(the answer among the first three) must stay at or above FLOOR; the figures are printed and recorded in
benchmarks/README.md ("Knowledge base")."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from commands.kb import builtin_set
from infra.knowledge import import_entries, search
from operators.knowledge import decode, parse_file
from tests.support import DATA

pytestmark = pytest.mark.integration

FLOOR = 0.8
QUERIES = [
    json.loads(line)
    for line in (DATA / "kb" / "relevance_queries.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def test_the_shipped_set_is_well_formed() -> None:
    name, data = builtin_set()
    entries = parse_file(name, decode(data))
    assert 30 <= len(entries) <= 60
    assert len({e.content_hash for e in entries}) == len(entries)
    titles = {e.title for e in entries}
    assert {q["expected"] for q in QUERIES} <= titles, "a query expects a passage the set does not have"
    assert len(QUERIES) >= 30


def test_top3_hit_rate_on_the_shipped_set(
    new_database: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, data = builtin_set()
    with psycopg.connect(new_database(migrated=True), autocommit=True) as conn:
        import_entries(conn, parse_file(name, decode(data)), name)
        ranks = []
        for q in QUERIES:
            titles = [p.title for p in search(conn, q["q"], 10)]
            ranks.append(titles.index(q["expected"]) + 1 if q["expected"] in titles else None)
    top1 = sum(r == 1 for r in ranks) / len(ranks)
    top3 = sum(r is not None and r <= 3 for r in ranks) / len(ranks)
    mrr = sum(1 / r for r in ranks if r is not None) / len(ranks)
    misses = [q["q"] for q, r in zip(QUERIES, ranks, strict=True) if r is None or r > 3]
    with capsys.disabled():
        print(
            f"\nknowledge base relevance: top-3 hit rate {top3:.3f} ({round(top3 * len(ranks))}/{len(ranks)}), "
            f"top-1 {top1:.3f}, MRR@10 {mrr:.3f}; outside the top 3: {misses}"
        )
    assert top3 >= FLOOR, misses
