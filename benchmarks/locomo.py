"""LoCoMo retrieval: recall@5, recall@10, hit@10 and MRR@50 per question category.

Follows ../shared/bench/README.md: every turn is one memory scoped to
``user_id = sample_id`` and ``actor_id = speaker``; each question with
evidence searches its conversation's scope. Runs the product's own search in
each mode, plus the reference the README quotes: LanceDB's BM25 over the bare
turn text (no speaker), the baseline the hybrid mode has to beat. Also times
the batch import, single adds and searches, for the side-by-side with mem0.

    python -m benchmarks.locomo --json benchmarks/results/locomo-dev.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.locomo_data import (
    DEFAULT_DATA,
    DEPTH,
    average,
    dia_ranking,
    dias_by_text,
    markdown,
    questions,
    scores,
    turns,
)
from lancemem.core.config import MODES, load_settings
from lancemem.memory.facade import Memory

REFERENCE = "bm25 (turn text)"
SINGLE_ADDS = 300


class TurnTextBM25:
    """The README's reference: LanceDB BM25 over the turn text alone, no speaker."""

    def __init__(self, path: str, records: list[dict[str, Any]]) -> None:
        import lancedb
        from lancedb.index import FTS

        rows = [{"sample": r["user_id"], "dia": r["metadata"]["dia_id"], "text": r["text"]}
                for r in records]
        self.table = lancedb.connect(path).create_table("turns", data=rows)
        self.table.create_index("text", config=FTS())

    def rank(self, sample: str, question: str) -> list[str]:
        where = "sample = '" + sample.replace("'", "''") + "'"
        hits = (self.table.search(question, query_type="fts").where(where, prefilter=True)
                .select(["dia"]).limit(DEPTH).to_list())
        return [hit["dia"] for hit in hits]


def single_adds(records: list[dict[str, Any]], db: str) -> list[float]:
    """Milliseconds per ``Memory.add`` of one turn, into a store of its own."""
    memory = Memory.from_settings(load_settings({"db": db}))
    memory.ensure_open()
    memory.embedder.embed_query("warm up")
    timings = []
    for record in records:
        started = time.perf_counter()
        memory.add(record["text"], user_id=record["user_id"], actor_id=record["actor_id"],
                   metadata=record["metadata"])
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def run(data: Path, modes: list[str]) -> dict[str, Any]:
    """Import every conversation, ask every question in every mode, average the metrics."""
    samples = json.loads(data.read_text())
    workdir = tempfile.mkdtemp(prefix="lancemem-locomo-")
    memory = Memory.from_settings(load_settings({"db": f"{workdir}/store"}))
    memory.ensure_open()
    memory.embedder.embed_query("warm up")
    records = [record for sample in samples for record in turns(sample)]
    started = time.perf_counter()
    memory.add_many(records)
    imported = time.perf_counter() - started
    dias_of = dias_by_text(records)
    reference = TurnTextBM25(f"{workdir}/reference", records)
    per: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    search_ms: dict[str, list[float]] = defaultdict(list)
    for sample_id, question, category, gold in questions(samples):
        rankings = {REFERENCE: reference.rank(sample_id, question)}
        for mode in modes:
            started = time.perf_counter()
            found = memory.search(question, user_id=sample_id, limit=DEPTH, mode=mode)
            search_ms[mode].append((time.perf_counter() - started) * 1000)
            rankings[mode] = dia_ranking(found["results"], dias_of)
        for name, ranked in rankings.items():
            metric = scores(ranked, gold)
            per[name][category].append(metric)
            per[name]["all"].append(metric)
    adds = single_adds(records[:SINGLE_ADDS], f"{workdir}/single")
    return {"engine": "lancemem", "data": str(data), "memories": len(records),
            "questions": len(per[REFERENCE]["all"]),
            "import_per_s": round(len(records) / imported, 1),
            "add_p50_ms": round(statistics.median(adds), 2),
            "search_p50_ms": {mode: round(statistics.median(v), 2)
                              for mode, v in search_ms.items()},
            "results": average(per)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"LoCoMo JSON (default {DEFAULT_DATA})")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no LoCoMo data at {args.data}; pass --data PATH (see ../shared/bench).")
    report = run(args.data, args.modes)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['memories']} memories, {report['questions']} questions; import "
          f"{report['import_per_s']}/s, single add p50 {report['add_p50_ms']} ms, "
          f"search p50 {report['search_p50_ms']}\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
