"""One scope holding many memories: vector search through the ANN index
against the exact scan, and the index's recall@10 against exact search.

    python -m benchmarks.big_scope --memories 100000 \\
        --json benchmarks/results/big-scope-100k.json

The scope is filled through ``Memory.add_many`` with clustered synthetic unit
vectors (1,000 centres plus noise: a real model's vectors have structure;
uniformly random 384-dimension vectors are a worst case no index is built
for). ``lancemem optimize``'s path then builds the index (its time is the
build cost). Searches run in-process through ``Memory.search(mode="vector")``,
the same code a server runs; exact results come from the same snapshot with
the index bypassed, and recall@10 compares what ``Memory.search`` returned
with them. Given ``--db`` naming a store an earlier run built, the
fill and the build are skipped and only the searches run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.speed import percentile
from lancemem.core.config import DEFAULT_MODEL
from lancemem.memory.facade import Memory
from lancemem.storage import vector_index
from lancemem.storage.schema import MEMORIES
from lancemem.storage.store import Store

DIM = 384


class ClusteredVectors:
    """Synthetic 'embeddings' with cluster structure; a text's number picks them."""

    model_name = DEFAULT_MODEL
    dim = DIM

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)
        self._centres = self._rng.standard_normal((1_000, DIM)).astype(np.float32)

    def _make(self, count: int) -> np.ndarray:
        vectors = (self._centres[self._rng.integers(0, len(self._centres), count)]
                   + 0.6 * self._rng.standard_normal((count, DIM)).astype(np.float32))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._make(len(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        self.last_query = self._make(1)[0]
        return self.last_query.tolist()


def run(memories: int, searches: int, db: str) -> dict[str, Any]:
    embedder = ClusteredVectors()
    memory = Memory(store=Store(db, auto_compact=False), embedder=embedder)  # type: ignore[arg-type]
    fill_s = optimize_s = None
    if not memory.store.has_table(MEMORIES):  # a store built by an earlier run is reused
        started = time.perf_counter()
        memory.add_many(({"text": f"note {n}", "user_id": "big"} for n in range(memories)),
                        batch_size=20_000)
        fill_s = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        memory.store.optimize()  # compaction, then the vector index (the scope is large)
        optimize_s = round(time.perf_counter() - started, 1)
    assert vector_index.has_vector_index(memory.store.table(MEMORIES))
    dataset = memory.store.open_dataset(MEMORIES)
    ann_ms, exact_ms, recalls = [], [], []
    for _ in range(searches):
        started = time.perf_counter()
        found = memory.search("q", user_id="big", mode="vector", limit=10)["results"]
        ann_ms.append((time.perf_counter() - started) * 1000)
        query = np.asarray(embedder.last_query, dtype=np.float32)  # the one searched for
        nearest = {"column": "vector", "q": query, "k": 10, "metric": "cosine"}
        started = time.perf_counter()
        exact = dataset.to_table(columns=["id"], filter="user_id = 'big'", prefilter=True,
                                 nearest={**nearest, "use_index": False})
        exact_ms.append((time.perf_counter() - started) * 1000)
        recalls.append(len(set(exact.column("id").to_pylist())
                           & {item["id"] for item in found}) / 10)
    cache_mib = memory.store._read_cache_bytes // 2**20
    memory.close()
    return {"memories": dataset.count_rows(), "searches": searches, "fill_s": fill_s,
            "optimize_with_index_build_s": optimize_s, "read_index_cache_mib": cache_mib,
            "search_vector_ann_ms": {"p50": round(statistics.median(ann_ms), 2),
                                     "p95": round(percentile(ann_ms, 0.95), 2)},
            "exact_scan_ms": {"p50": round(statistics.median(exact_ms), 2),
                              "p95": round(percentile(exact_ms, 0.95), 2)},
            "recall_at_10": round(statistics.mean(recalls), 4),
            "recall_at_10_min": min(recalls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--db", help="where to build the store (default: a new temp dir)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = run(args.memories, args.searches, args.db or tempfile.mkdtemp(prefix="lancemem-big-"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
