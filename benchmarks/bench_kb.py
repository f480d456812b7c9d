"""The knowledge base's search (not a test): the shipped set (commands/data/kb_channels_shop.jsonl)
imported into a fresh embedded PostgreSQL, the relevance queries (tests/data/kb/relevance_queries.jsonl)
asked, for each segmenter (rjieba; jieba when installed) and ts_rank variant: top-3 hit rate, top-1, MRR@10,
import time and query latency. The product's choice is the first line (infra/knowledge.py RANK_*).

    .venv/bin/python benchmarks/bench_kb.py [--rounds 20] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

VARIANTS = [  # (weights for D, C, B, A; normalization)
    ("{0.5, 0.5, 0.8, 1.0}", 0),
    ("{0.5, 0.5, 0.8, 1.0}", 1),
    ("{0.2, 0.4, 0.6, 1.0}", 0),
    ("{0.2, 0.4, 0.6, 1.0}", 1),
    ("{0.1, 0.2, 0.4, 1.0}", 0),  # PostgreSQL's default weights
    ("{0.1, 0.2, 0.4, 1.0}", 1),
]


def segmenters() -> list[tuple[str, Callable[[str], list[str]]]]:
    import rjieba

    found: list[tuple[str, Callable[[str], list[str]]]] = [("rjieba", rjieba.cut_for_search)]
    try:
        import jieba
    except ImportError:
        return found
    jieba.setLogLevel(60)
    found.append(("jieba", lambda text: list(jieba.cut_for_search(text))))
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20, help="query rounds for the latency figures")
    ap.add_argument("--smoke", action="store_true", help="one segmenter, one variant, one round")
    args = ap.parse_args()

    import psycopg

    import infra.knowledge as store
    import operators.knowledge as knowledge
    from commands.kb import builtin_set
    from infra.embedded import EmbeddedPostgres, create_database
    from infra.migrate import apply_up

    name, data = builtin_set()
    text = knowledge.decode(data)
    queries = [
        json.loads(line)
        for line in (HERE / "tests" / "data" / "kb" / "relevance_queries.jsonl").read_text().splitlines()
        if line.strip()
    ]
    cuts = segmenters()[:1] if args.smoke else segmenters()
    variants = VARIANTS[:1] if args.smoke else VARIANTS
    rounds = 1 if args.smoke else args.rounds
    print(f"{len(queries)} queries over {name}")
    with tempfile.TemporaryDirectory() as d, EmbeddedPostgres(Path(d) / "pg", durable=False) as pg:
        create_database(pg.url_for("postgres"), "kb")
        url = pg.url_for("kb")
        apply_up(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for seg_name, cut in cuts:
                knowledge._cut_for_search = lambda cut=cut: cut  # type: ignore[assignment]
                entries = knowledge.parse_file(name, text)
                conn.execute("TRUNCATE kb_passages")
                started = time.perf_counter()
                store.import_entries(conn, entries, name)
                import_s = time.perf_counter() - started
                for weights, norm in variants:
                    store.SEARCH_SQL = store.SEARCH_SQL_TEMPLATE.format(weights=weights, normalization=norm)
                    ranks, latencies = [], []
                    for r in range(rounds):
                        for q in queries:
                            started = time.perf_counter()
                            titles = [p.title for p in store.search(conn, q["q"], 10)]
                            latencies.append(time.perf_counter() - started)
                            if r == 0:
                                ranks.append(
                                    titles.index(q["expected"]) + 1 if q["expected"] in titles else None
                                )
                    top1 = sum(rank == 1 for rank in ranks) / len(ranks)
                    top3 = sum(rank is not None and rank <= 3 for rank in ranks) / len(ranks)
                    mrr = sum(1 / rank for rank in ranks if rank is not None) / len(ranks)
                    p50 = statistics.median(latencies) * 1000
                    p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000
                    print(
                        f"{seg_name:7} weights {weights} norm {norm}: top-3 hit rate {top3:.3f}, top-1 {top1:.3f}, "
                        f"MRR@10 {mrr:.3f}; import {len(entries)} passages {import_s * 1000:.0f} ms; "
                        f"query p50 {p50:.2f} ms p95 {p95:.2f} ms"
                    )


if __name__ == "__main__":
    main()
